#!/usr/bin/env python3
"""Module cycles of the crate: `crate::`/`super::` edges between modules (test modules left out), grouped
into strongly connected components. Prints each cycle with its edges; prints nothing when there is none.

    python3 scripts/module-cycles.py [SRC_DIR [DEPTH]]     # defaults: src 2 (e.g. kms::aws, routes::codec)

DEPTH 1 looks at top-level modules only (kms, codec, config, ...). A quick check, not a parser: it reads
paths in the text, so a path in a comment or string counts too.
"""
import os, re, sys
from collections import defaultdict
root = sys.argv[1] if len(sys.argv) > 1 else 'src'
depth = int(sys.argv[2]) if len(sys.argv) > 2 else 2
def modpath(f):
    rel = os.path.relpath(f, root)[:-3].split('/')
    if rel[-1] in ('mod', 'lib', 'main'):
        rel = rel[:-1]
    return rel
edges = defaultdict(set)
for d, _, fs in os.walk(root):
    for fn in fs:
        if not fn.endswith('.rs'): continue
        f = os.path.join(d, fn)
        me = modpath(f)
        src = open(f).read()
        src = src.split('#[cfg(test)]\nmod tests')[0]
        targets = set()
        # use crate::a::{b, c}  /  crate::a::b
        for m in re.finditer(r'crate::((?:[a-z_0-9]+::)*[a-z_0-9]+)(::\{([^}]*)\})?', src):
            base = m.group(1).split('::')
            if m.group(3):
                for part in m.group(3).split(','):
                    part = part.strip().split('::')[0].split(' ')[0]
                    if part and part != 'self' and part[0].islower():
                        targets.add(tuple(base + [part]))
                    else:
                        targets.add(tuple(base))
            else:
                targets.add(tuple(base))
        for m in re.finditer(r'\bsuper::(\{[^}]*\}|[a-z_0-9]+)', src):
            parent = me[:-1]
            for part in m.group(1).strip('{}').split(','):
                part = part.strip().split('::')[0]
                if part and part[0].islower() and part != 'self':
                    targets.add(tuple(parent + [part]))
        for t in targets:
            # keep only module-ish segments: lowercase path prefixes that exist as modules
            segs = []
            for s in t:
                p = os.path.join(root, *segs, s)
                if os.path.isdir(p) or os.path.exists(p + '.rs'):
                    segs.append(s)
                else:
                    break
            a = tuple(me[:depth]); b = tuple(segs[:depth])
            if b and a != b and a[:len(b)] != b and b[:len(a)] != a:
                edges['::'.join(a)].add('::'.join(b))
# Tarjan SCC
idx = {}; low = {}; st = []; on = set(); sccs = []; c = [0]
def sc(v):
    idx[v] = low[v] = c[0]; c[0] += 1; st.append(v); on.add(v)
    for w in edges.get(v, ()):
        if w not in idx: sc(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], idx[w])
    if low[v] == idx[v]:
        comp = []
        while True:
            w = st.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: sccs.append(sorted(comp))
sys.setrecursionlimit(10000)
for v in list(edges):
    if v not in idx: sc(v)
for comp in sccs:
    print('cycle:', ', '.join(comp))
    for a in comp:
        for b in sorted(edges[a]):
            if b in comp: print('   ', a, '->', b)
