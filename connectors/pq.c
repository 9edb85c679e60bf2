/*
 * pq.c - loads libpq on first use (see pq.h for why).
 */
#define WEIR_PQ_LOADER
#include "weir/pq.h"

#include <dlfcn.h>

struct weir_pq_api weir_pq;

static int pq_loaded;

int weir_pq_load(char *err, size_t errlen)
{
    void *h;

    if (pq_loaded)
        return WEIR_OK;
    h = dlopen("libpq.so.5", RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        weir_set_err(err, errlen, "cannot load libpq: %s", dlerror());
        return WEIR_EIO;
    }
#define WEIR_PQ_RESOLVE(f) \
    if ((*(void **)&weir_pq.f = dlsym(h, #f)) == NULL) { \
        weir_set_err(err, errlen, "libpq lacks %s", #f); \
        return WEIR_EIO; \
    }
    WEIR_PQ_FUNCS(WEIR_PQ_RESOLVE)
#undef WEIR_PQ_RESOLVE
    pq_loaded = 1; /* the handle stays open for the life of the process */
    return WEIR_OK;
}
