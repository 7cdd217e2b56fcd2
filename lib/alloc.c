/*
 * alloc.c - the per-handle allocator and ot_buf.
 *
 * SPDX-License-Identifier: MIT
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void *oti_malloc(const oti_alloc *a, size_t size)
{
    if (size == 0)
        size = 1;
    if (a != NULL && a->fn != NULL)
        return a->fn(a->user, NULL, 0, size);
    return malloc(size);
}

void *oti_calloc(const oti_alloc *a, size_t n, size_t size)
{
    void *p;

    if (size != 0 && n > SIZE_MAX / size)
        return NULL;
    p = oti_malloc(a, n * size);
    if (p != NULL)
        memset(p, 0, n * size);
    return p;
}

void *oti_realloc(const oti_alloc *a, void *p, size_t old_size, size_t new_size)
{
    if (p == NULL)
        return oti_malloc(a, new_size);
    if (new_size == 0)
        new_size = 1;
    if (a != NULL && a->fn != NULL)
        return a->fn(a->user, p, old_size ? old_size : 1, new_size);
    return realloc(p, new_size);
}

void oti_free(const oti_alloc *a, void *p, size_t size)
{
    if (p == NULL)
        return;
    if (a != NULL && a->fn != NULL)
        a->fn(a->user, p, size ? size : 1, 0);
    else
        free(p);
}

char *oti_strdup(const oti_alloc *a, const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = oti_malloc(a, n);

    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

int oti_grow(const oti_alloc *a, void **pp, size_t *cap, size_t need, size_t elem)
{
    size_t ncap = *cap ? *cap : 8;
    void *np;

    if (need <= *cap)
        return 0;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2)
            return -1;
        ncap *= 2;
    }
    if (elem != 0 && ncap > SIZE_MAX / elem)
        return -1;
    np = oti_realloc(a, *pp, *cap * elem, ncap * elem);
    if (np == NULL)
        return -1;
    *pp = np;
    *cap = ncap;
    return 0;
}

struct ot_buf {
    oti_alloc alloc;
    uint8_t *data;
    size_t size;
    size_t cap;
};

ot_buf *oti_buf_wrap(const oti_alloc *a, uint8_t *data, size_t size, size_t cap)
{
    ot_buf *b = oti_malloc(a, sizeof(*b));

    if (b == NULL)
        return NULL;
    b->alloc = *a;
    b->data = data;
    b->size = size;
    b->cap = cap;
    return b;
}

ot_buf *oti_buf_new(const oti_alloc *a, size_t size)
{
    uint8_t *d = oti_malloc(a, size);
    ot_buf *b;

    if (d == NULL)
        return NULL;
    b = oti_buf_wrap(a, d, size, size ? size : 1);
    if (b == NULL)
        oti_free(a, d, size ? size : 1);
    return b;
}

uint8_t *oti_buf_mut(ot_buf *b)
{
    return b->data;
}

void oti_buf_shrink(ot_buf *b, size_t size)
{
    if (size < b->size)
        b->size = size;
}

const uint8_t *ot_buf_data(const ot_buf *buf)
{
    return buf != NULL ? buf->data : NULL;
}

size_t ot_buf_size(const ot_buf *buf)
{
    return buf != NULL ? buf->size : 0;
}

void ot_buf_release(ot_buf *buf)
{
    oti_alloc a;

    if (buf == NULL)
        return;
    a = buf->alloc;
    oti_free(&a, buf->data, buf->cap);
    oti_free(&a, buf, sizeof(*buf));
}
