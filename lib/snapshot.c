/*
 * snapshot.c - paged copies of a params view: the mutable shadow the encoder
 * advances, and the immutable, reference-counted ot_snapshot published from
 * it.
 *
 * Storage.  Each held array of each block is cut into pages of 2^shift rows
 * (about OTI_PAGE_FLOATS floats per page).  A page carries an atomic
 * reference count; snapshots and shadows made from one another share pages,
 * and a shadow copies a page before writing to it while it is shared.  So:
 *
 *  - publishing a shadow as a snapshot costs O(pages) (pointer copies and
 *    reference increments), never a data copy;
 *  - the shadow's later writes copy only the pages they land in;
 *  - ot_snapshot_update() makes a snapshot of a model from the previous one
 *    by copying only the pages holding rows the model marked touched.
 *
 * Scattered touches spread over many pages: 1% of rows chosen uniformly at
 * random touch nearly every 4096-row page, so those cases still copy most of
 * the data.  docs/wire-format.md ("Snapshots") gives the figures.
 *
 * SPDX-License-Identifier: MIT
 */
#include <string.h>

#include "delta.h"

/* ---- pages ---------------------------------------------------------------- */

static size_t page_bytes(uint32_t nfloats)
{
    return sizeof(oti_page) + (size_t)nfloats * sizeof(float);
}

static oti_page *page_new(const oti_alloc *a, uint32_t nfloats)
{
    oti_page *pg = oti_malloc(a, page_bytes(nfloats));

    if (pg == NULL)
        return NULL;
    atomic_init(&pg->refs, 1u);
    pg->nfloats = nfloats;
    pg->pad = 0;
    return pg;
}

static void page_retain(oti_page *pg)
{
    atomic_fetch_add_explicit(&pg->refs, 1u, memory_order_relaxed);
}

static void page_release(const oti_alloc *a, oti_page *pg)
{
    if (pg == NULL)
        return;
    if (atomic_fetch_sub_explicit(&pg->refs, 1u, memory_order_acq_rel) == 1u)
        oti_free(a, pg, page_bytes(pg->nfloats));
}

static uint32_t page_rows(const oti_sblock *sb, size_t pg)
{
    uint64_t rpp = UINT64_C(1) << sb->shift, first = (uint64_t)pg << sb->shift;
    uint64_t n = sb->rows - first;

    return (uint32_t)(n < rpp ? n : rpp);
}

static const float *params_array(const oti_block *b, int a)
{
    return a == 0 ? b->w : b->s[a - 1];
}

/* ---- shadows ---------------------------------------------------------------- */

static void shape_block(oti_sblock *sb, const oti_block *b, unsigned amask)
{
    uint64_t rpp = 1;
    unsigned shift = 0;
    uint64_t want = b->cols > 0 && b->cols < OTI_PAGE_FLOATS ? OTI_PAGE_FLOATS / b->cols : 1;

    memset(sb, 0, sizeof(*sb));
    sb->kind = b->kind;
    memcpy(sb->name, b->name, sizeof(sb->name));
    sb->name[sizeof(sb->name) - 1] = '\0';
    sb->offset = b->offset;
    sb->rows = b->rows;
    sb->cols = b->cols;
    sb->nstate = b->nstate;
    sb->amask = amask;
    while (rpp * 2 <= want) {
        rpp *= 2;
        shift++;
    }
    sb->shift = shift;
    sb->npages = (size_t)((b->rows + rpp - 1) >> shift);
}

static void free_tables(oti_shadow *sh)
{
    size_t b, i;
    int a;

    if (sh->blocks == NULL)
        return;
    for (b = 0; b < sh->nblocks; b++) {
        oti_sblock *sb = &sh->blocks[b];
        for (a = 0; a < OTI_NARRAYS; a++) {
            if (sb->pages[a] == NULL)
                continue;
            for (i = 0; i < sb->npages; i++)
                page_release(&sh->alloc, sb->pages[a][i]);
            oti_free(&sh->alloc, sb->pages[a], sb->npages * sizeof(oti_page *));
        }
    }
    oti_free(&sh->alloc, sh->blocks, sh->nblocks * sizeof(oti_sblock));
    sh->blocks = NULL;
}

void oti_shadow_destroy(oti_shadow *sh)
{
    oti_alloc a;

    if (sh == NULL)
        return;
    a = sh->alloc;
    free_tables(sh);
    oti_free(&a, sh, sizeof(*sh));
}

static int valid_params(const oti_params *p)
{
    size_t b;

    if (p == NULL || (p->nblocks > 0 && p->blocks == NULL))
        return 0;
    for (b = 0; b < p->nblocks; b++) {
        const oti_block *blk = &p->blocks[b];
        int s;
        if (blk->w == NULL || blk->cols == 0 || blk->nstate < 0 || blk->nstate > OTI_MAX_STATE ||
            blk->rows > UINT32_MAX)
            return 0;
        for (s = 0; s < blk->nstate; s++)
            if (blk->s[s] == NULL)
                return 0;
    }
    return 1;
}

/* Fills the page tables of `sh` (blocks already shaped) by copying p. */
static ot_status copy_pages(oti_shadow *sh, const oti_params *p)
{
    size_t b, i;
    int a;

    for (b = 0; b < sh->nblocks; b++) {
        oti_sblock *sb = &sh->blocks[b];
        for (a = 0; a < OTI_NARRAYS; a++) {
            const float *src;
            if (!(sb->amask & (1u << a)))
                continue;
            src = params_array(&p->blocks[b], a);
            sb->pages[a] = oti_calloc(&sh->alloc, sb->npages ? sb->npages : 1, sizeof(oti_page *));
            if (sb->pages[a] == NULL)
                return OT_ENOMEM;
            for (i = 0; i < sb->npages; i++) {
                uint32_t n = page_rows(sb, i) * sb->cols;
                oti_page *pg = page_new(&sh->alloc, n);
                if (pg == NULL)
                    return OT_ENOMEM;
                memcpy(pg->data, src + ((size_t)i << sb->shift) * sb->cols, (size_t)n * 4);
                sb->pages[a][i] = pg;
            }
        }
    }
    return OT_OK;
}

ot_status oti_shadow_create(const oti_alloc *a, const oti_params *p, int source, uint64_t version,
                            oti_shadow **out)
{
    oti_shadow *sh;
    size_t b;
    ot_status st;

    if (out == NULL || !valid_params(p) || source < OTI_SRC_WEIGHTS || source > OTI_SRC_BOTH)
        return OT_EINVAL;
    sh = oti_calloc(a, 1, sizeof(*sh));
    if (sh == NULL)
        return OT_ENOMEM;
    sh->alloc = a != NULL ? *a : (oti_alloc){NULL, NULL};
    sh->fingerprint = p->fingerprint;
    sh->total = p->total;
    sh->version = version;
    sh->source = source;
    sh->blocks = oti_calloc(&sh->alloc, p->nblocks ? p->nblocks : 1, sizeof(oti_sblock));
    if (sh->blocks == NULL) {
        oti_free(&sh->alloc, sh, sizeof(*sh));
        return OT_ENOMEM;
    }
    sh->nblocks = p->nblocks;
    for (b = 0; b < p->nblocks; b++)
        shape_block(&sh->blocks[b], &p->blocks[b], oti_source_mask(source, p->blocks[b].nstate));
    if ((st = copy_pages(sh, p)) != OT_OK) {
        oti_shadow_destroy(sh);
        return st;
    }
    *out = sh;
    return OT_OK;
}

ot_status oti_shadow_clone(const oti_shadow *src, oti_shadow **out)
{
    oti_shadow *sh;
    size_t b, i;
    int a;

    if (src == NULL || out == NULL)
        return OT_EINVAL;
    sh = oti_calloc(&src->alloc, 1, sizeof(*sh));
    if (sh == NULL)
        return OT_ENOMEM;
    *sh = *src;
    sh->blocks = oti_calloc(&sh->alloc, src->nblocks ? src->nblocks : 1, sizeof(oti_sblock));
    if (sh->blocks == NULL) {
        oti_free(&sh->alloc, sh, sizeof(*sh));
        return OT_ENOMEM;
    }
    for (b = 0; b < src->nblocks; b++) {
        oti_sblock *d = &sh->blocks[b];
        const oti_sblock *s = &src->blocks[b];
        *d = *s;
        for (a = 0; a < OTI_NARRAYS; a++)
            d->pages[a] = NULL;
        for (a = 0; a < OTI_NARRAYS; a++) {
            if (s->pages[a] == NULL)
                continue;
            d->pages[a] = oti_malloc(&sh->alloc, (s->npages ? s->npages : 1) * sizeof(oti_page *));
            if (d->pages[a] == NULL) {
                oti_shadow_destroy(sh);
                return OT_ENOMEM;
            }
            for (i = 0; i < s->npages; i++) {
                d->pages[a][i] = s->pages[a][i];
                page_retain(d->pages[a][i]);
            }
        }
    }
    *out = sh;
    return OT_OK;
}

int oti_shadow_unshare(oti_shadow *sh, size_t b, int a, size_t pgi)
{
    oti_sblock *sb = &sh->blocks[b];
    oti_page *pg = sb->pages[a][pgi], *np;

    if (atomic_load_explicit(&pg->refs, memory_order_acquire) == 1u)
        return 0;
    np = page_new(&sh->alloc, pg->nfloats);
    if (np == NULL)
        return -1;
    memcpy(np->data, pg->data, (size_t)pg->nfloats * 4);
    sb->pages[a][pgi] = np;
    page_release(&sh->alloc, pg);
    return 0;
}

int oti_shadow_unshare_rows(oti_shadow *sh, size_t b, int a, uint64_t first, uint64_t last)
{
    oti_sblock *sb = &sh->blocks[b];
    size_t pg;

    for (pg = (size_t)(first >> sb->shift); pg <= (size_t)(last >> sb->shift); pg++)
        if (oti_shadow_unshare(sh, b, a, pg) != 0)
            return -1;
    return 0;
}

int oti_shadow_matches(const oti_shadow *sh, const oti_params *p)
{
    size_t b;

    if (sh == NULL || p == NULL || sh->fingerprint != p->fingerprint || sh->nblocks != p->nblocks)
        return 0;
    for (b = 0; b < p->nblocks; b++) {
        const oti_sblock *sb = &sh->blocks[b];
        const oti_block *pb = &p->blocks[b];
        if (sb->rows != pb->rows || sb->cols != pb->cols || sb->offset != pb->offset ||
            sb->nstate != pb->nstate)
            return 0;
    }
    return 1;
}

/* The block holding flat index idx (blocks are sorted by offset). */
static size_t find_block(const oti_shadow *sh, uint64_t idx)
{
    size_t lo = 0, hi = sh->nblocks;

    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (sh->blocks[mid].offset <= idx)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

ot_status oti_shadow_read(const oti_shadow *sh, int a, uint64_t first, size_t n, float *out)
{
    size_t b;

    if (sh == NULL || (out == NULL && n > 0) || a < 0 || a >= OTI_NARRAYS)
        return OT_EINVAL;
    if (first > sh->total || n > sh->total - first)
        return OT_ERANGE;
    if (n == 0)
        return OT_OK;
    b = find_block(sh, first);
    while (n > 0) {
        const oti_sblock *sb = &sh->blocks[b];
        uint64_t rel = first - sb->offset, size = sb->rows * sb->cols;
        if (rel >= size) {
            b++;
            continue;
        }
        if (sb->pages[a] == NULL)
            return OT_ENOENT;
        while (n > 0 && rel < size) {
            uint64_t row = rel / sb->cols;
            size_t pgi = (size_t)(row >> sb->shift);
            uint64_t pfirst = ((uint64_t)pgi << sb->shift) * sb->cols;
            const oti_page *pg = sb->pages[a][pgi];
            size_t k = (size_t)(rel - pfirst), take = pg->nfloats - k;
            if (take > n)
                take = n;
            memcpy(out, pg->data + k, take * 4);
            out += take;
            n -= take;
            rel += take;
            first += take;
        }
        b++;
    }
    return OT_OK;
}

/* ---- snapshots ------------------------------------------------------------------ */

ot_status oti_shadow_into_snapshot(oti_shadow *sh, ot_snapshot **out)
{
    ot_snapshot *s;
    oti_alloc a;

    if (sh == NULL || out == NULL)
        return OT_EINVAL;
    a = sh->alloc;
    s = oti_malloc(&a, sizeof(*s));
    if (s == NULL)
        return OT_ENOMEM;
    atomic_init(&s->refs, 1u);
    s->body = *sh;
    oti_free(&a, sh, sizeof(*sh));
    *out = s;
    return OT_OK;
}

ot_status oti_shadow_publish(const oti_shadow *sh, uint64_t version, ot_snapshot **out)
{
    oti_shadow *c;
    ot_status st;

    if (sh == NULL || out == NULL)
        return OT_EINVAL;
    if ((st = oti_shadow_clone(sh, &c)) != OT_OK)
        return st;
    c->version = version;
    if ((st = oti_shadow_into_snapshot(c, out)) != OT_OK)
        oti_shadow_destroy(c);
    return st;
}

ot_status oti_shadow_from_snapshot(const ot_snapshot *s, oti_shadow **out)
{
    if (s == NULL)
        return OT_EINVAL;
    return oti_shadow_clone(&s->body, out);
}

ot_status oti_snapshot_writable(ot_snapshot *s, ot_snapshot **w)
{
    oti_shadow *c;
    ot_status st;

    if (s == NULL || w == NULL)
        return OT_EINVAL;
    if (atomic_load_explicit(&s->refs, memory_order_acquire) == 1u) {
        *w = s;
        return OT_OK;
    }
    if ((st = oti_shadow_clone(&s->body, &c)) != OT_OK)
        return st;
    if ((st = oti_shadow_into_snapshot(c, w)) != OT_OK)
        oti_shadow_destroy(c);
    return st;
}

void oti_snapshot_commit(ot_snapshot **slot, ot_snapshot *w, ot_status st)
{
    if (w == *slot)
        return;
    if (st == OT_OK) {
        ot_snapshot_release(*slot);
        *slot = w;
    } else {
        ot_snapshot_release(w);
    }
}

ot_status oti_snapshot_refresh(ot_snapshot *s, const oti_params *p)
{
    oti_shadow *sh = &s->body;
    size_t b;
    int a;

    /* Replaces, in a snapshot nobody else sees yet, every page holding a
     * touched row of p with a fresh copy of p's rows. */
    for (b = 0; b < sh->nblocks; b++) {
        oti_sblock *sb = &sh->blocks[b];
        const oti_block *pb = &p->blocks[b];
        int all = pb->touched_bits == NULL || pb->all_touched;
        uint64_t n = all ? sb->npages : pb->ntouched;
        uint64_t k;
        for (a = 0; a < OTI_NARRAYS; a++) {
            const float *src;
            if (sb->pages[a] == NULL)
                continue;
            src = params_array(pb, a);
            for (k = 0; k < n; k++) {
                size_t pgi = all ? (size_t)k : (size_t)(pb->touched_list[k] >> sb->shift);
                oti_page *old = sb->pages[a][pgi], *np;
                if (atomic_load_explicit(&old->refs, memory_order_acquire) == 1u)
                    continue; /* already fresh (made by this call) */
                np = page_new(&sh->alloc, old->nfloats);
                if (np == NULL)
                    return OT_ENOMEM;
                memcpy(np->data, src + ((size_t)pgi << sb->shift) * sb->cols,
                       (size_t)old->nfloats * 4);
                sb->pages[a][pgi] = np;
                page_release(&sh->alloc, old);
            }
        }
    }
    return OT_OK;
}

ot_snapshot *ot_snapshot_retain(ot_snapshot *s)
{
    if (s != NULL)
        atomic_fetch_add_explicit(&s->refs, 1u, memory_order_relaxed);
    return s;
}

void ot_snapshot_release(ot_snapshot *s)
{
    oti_alloc a;

    if (s == NULL)
        return;
    if (atomic_fetch_sub_explicit(&s->refs, 1u, memory_order_acq_rel) != 1u)
        return;
    a = s->body.alloc;
    free_tables(&s->body);
    oti_free(&a, s, sizeof(*s));
}

uint64_t ot_snapshot_version(const ot_snapshot *s)
{
    return s != NULL ? s->body.version : 0;
}

uint64_t ot_snapshot_fingerprint(const ot_snapshot *s)
{
    return s != NULL ? s->body.fingerprint : 0;
}

uint64_t ot_snapshot_num_weights(const ot_snapshot *s)
{
    return s != NULL ? s->body.total : 0;
}

int ot_snapshot_has_array(const ot_snapshot *s, int array)
{
    size_t b;

    if (s == NULL || array < 0 || array >= OTI_NARRAYS)
        return 0;
    for (b = 0; b < s->body.nblocks; b++)
        if (s->body.blocks[b].pages[array] != NULL)
            return 1;
    return 0;
}

ot_status ot_snapshot_read(const ot_snapshot *s, int array, uint64_t first, size_t n, float *out)
{
    if (s == NULL)
        return OT_EINVAL;
    return oti_shadow_read(&s->body, array, first, n, out);
}
