/** The end-to-end test's workflow: input → activity → result. Bundled by @temporalio/worker. */
import { proxyActivities } from '@temporalio/workflow';

import type * as activities from './activities';

const { charge } = proxyActivities<typeof activities>({
  startToCloseTimeout: '10 seconds',
  retry: { maximumAttempts: 1 },
});

export interface Order {
  card: string;
  amountCents: number;
}

export async function payOrder(order: Order): Promise<string> {
  const receipt = await charge(order);
  return `receipt for ${receipt}`;
}
