/** The end-to-end test's activity. Runs in the worker process. */
import type { Order } from './workflows';

export async function charge(order: Order): Promise<string> {
  return `${order.card} charged ${order.amountCents}`;
}
