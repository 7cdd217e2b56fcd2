/*
 * params.c - operations on the flat parameter view (params.h): clearing the
 * touched trackers and finding the block of a flat index.
 *
 * SPDX-License-Identifier: MIT
 */
#include <string.h>

#include "params.h"

void oti_params_clear_touched(oti_params *p)
{
    size_t i;

    if (p == NULL)
        return;
    for (i = 0; i < p->nblocks; i++) {
        oti_block *b = &p->blocks[i];
        uint64_t words = (b->rows + 63) / 64;

        if (b->touched_bits != NULL) {
            /* Clearing bit by bit costs O(touched); a full clear is cheaper
             * once a large share of the rows was touched. */
            if (b->ntouched * 8 >= words) {
                memset(b->touched_bits, 0, (size_t)words * sizeof(uint64_t));
            } else {
                uint64_t k;
                for (k = 0; k < b->ntouched; k++) {
                    uint32_t r = b->touched_list[k];
                    b->touched_bits[r >> 6] = 0;
                }
            }
        }
        b->ntouched = 0;
        b->all_touched = 0;
    }
}

oti_block *oti_params_find(const oti_params *p, uint64_t idx)
{
    size_t lo = 0, hi;

    if (p == NULL || p->nblocks == 0 || idx >= p->total)
        return NULL;
    hi = p->nblocks;
    /* The last block whose offset is <= idx. */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (p->blocks[mid].offset <= idx)
            lo = mid;
        else
            hi = mid;
    }
    return &p->blocks[lo];
}
