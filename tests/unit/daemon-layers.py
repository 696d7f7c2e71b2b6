#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Fails if the files of daemon/ call each other in a circle of more than
two files (docs/architecture.md "Layers").  It reads the sources: a
function defined at column 0 in one file and called in another is an
edge between them; the strongly connected components of that graph are
the circles.  --graph prints every edge."""
import os
import re
import sys

DEF = re.compile(r'^(?!static\b)[a-z][^;(\n=:]*?\b([a-z_][a-z0-9_]*)\(', re.M)
CALL = re.compile(r'\b([a-z_][a-z0-9_]*)\s*\(')


def strip(src):
    src = re.sub(r'/\*.*?\*/', ' ', src, flags=re.S)
    src = re.sub(r'//[^\n]*', ' ', src)
    return re.sub(r'"(\\.|[^"\\])*"', '""', src)


def graph(root):
    files = sorted(f for f in os.listdir(root) if f.endswith('.c'))
    text = {f: strip(open(os.path.join(root, f)).read()) for f in files}
    owner = {}
    for f in files:
        for name in DEF.findall(text[f]):
            owner.setdefault(name, f)
    edges = {f: set() for f in files}
    for f in files:
        for name in CALL.findall(text[f]):
            g = owner.get(name)
            if g and g != f:
                edges[f].add(g)
    return edges


def components(edges):
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main():
    root = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] != '--graph' else \
        os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'daemon')
    edges = graph(root)
    if '--graph' in sys.argv:
        for f in sorted(edges):
            print('%-14s -> %s' % (f, ' '.join(sorted(edges[f]))))
    bad = [c for c in components(edges) if len(c) > 2]
    for c in bad:
        print('daemon/: these %d files call each other in a circle: %s; '
              'make the lower one report through a callback (docs/architecture.md)'
              % (len(c), ' '.join(c)))
    if not bad:
        print('daemon/: no circle of more than two files (%d files)' % len(edges))
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
