/*
 * test_connectors.c - the generated connector table (connectors.h): every
 * connector with natives or a preload hook is in it once, with a name,
 * natives whose entries are complete, and a preload bit of its own.
 */
#include "check.h"
#include "weir/connectors.h"
#include "weir/pg.h"

#include <string.h>

static const weir_connector_desc *find(const char *name)
{
    for (const weir_connector_desc *const *d = weir_connectors; *d; d++)
        if (strcmp((*d)->name, name) == 0)
            return *d;
    return NULL;
}

static void test_table(void)
{
    int32_t bits = 0;
    int n = 0;

    for (const weir_connector_desc *const *d = weir_connectors; *d; d++) {
        n++;
        CHECK((*d)->name != NULL && (*d)->name[0] != '\0');
        CHECK(find((*d)->name) == *d); /* names are unique */
        if ((*d)->natives != NULL)
            for (const luaL_Reg *r = (*d)->natives; r->name; r++)
                CHECK(r->func != NULL);
        /* a hook has a bit, and no two connectors share one */
        CHECK(((*d)->preload != NULL) == ((*d)->preload_bit != 0));
        CHECK(((*d)->preload_bit & ((*d)->preload_bit - 1)) == 0);
        CHECK((bits & (*d)->preload_bit) == 0);
        bits |= (*d)->preload_bit;
    }
    CHECK(n >= 3);
    CHECK(find("bulk") != NULL && find("redis") != NULL);
    CHECK(find("pg") == &weir_connector_pg);
    CHECK_EQ_INT(weir_connector_pg.preload_bit, WEIR_PRELOAD_LIBPQ);
    CHECK(strcmp(find("redis")->table, "redis") == 0);
}

int main(void)
{
    test_table();
    return CHECK_DONE();
}
