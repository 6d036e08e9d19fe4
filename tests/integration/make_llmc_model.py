#!/usr/bin/env python3
"""Writes a random GPT-2 model file in llm.c's format (written independently of xdt, from
llm.c's layout): 256 int32 header [20240326, 3, maxT, V, L, NH, C, Vp, 0...], then fp32
parameters wte, wpe, ln1w, ln1b, qkvw, qkvb, attprojw, attprojb, ln2w, ln2b, fcw, fcb, fcprojw,
fcprojb (each for all layers), lnfw, lnfb.

usage: make_llmc_model.py OUT.bin maxT V L NH C Vp SEED"""
import random
import struct
import sys


def main():
    out, max_t, v, n_layer, n_head, c, vp, seed = sys.argv[1], *map(int, sys.argv[2:9])
    del v, n_head  # shape fields only
    sizes = [vp * c, max_t * c, n_layer * c, n_layer * c, n_layer * 3 * c * c, n_layer * 3 * c,
             n_layer * c * c, n_layer * c, n_layer * c, n_layer * c, n_layer * 4 * c * c,
             n_layer * 4 * c, n_layer * c * 4 * c, n_layer * c, c, c]
    header = [20240326, 3] + list(map(int, sys.argv[2:9][:6])) + [0] * 248
    rng = random.Random(seed)
    with open(out, "wb") as f:
        f.write(struct.pack("<256i", *header))
        for n in sizes:
            f.write(struct.pack("<%df" % n, *(rng.gauss(0.0, 0.05) for _ in range(n))))


if __name__ == "__main__":
    main()
