/*
 * pq.h - libpq, loaded when first needed. libpq pulls in some twenty
 * libraries (OpenSSL, GnuTLS, Kerberos, LDAP...) whose loading and
 * initialisers cost about 5 ms per process start: every `weir` command
 * and every worker would pay it, though most never talk to PostgreSQL.
 * So libweir does not link libpq; weir_pq_load() dlopens it once and the
 * PQ* names below go through a table of function pointers. Types and
 * constants still come from libpq-fe.h. C only (not part of the FFI).
 */
#ifndef WEIR_PQ_H
#define WEIR_PQ_H

#include "weir/common.h"

#include <libpq-fe.h>
#include <stddef.h>

#define WEIR_PQ_FUNCS(X) \
    X(PQbinaryTuples) X(PQcancel) X(PQclear) X(PQcmdTuples) \
    X(PQconnectdbParams) X(PQdescribePrepared) X(PQerrorMessage) X(PQexec) \
    X(PQexecParams) X(PQexecPrepared) X(PQfinish) X(PQfname) \
    X(PQfmod) X(PQfreeCancel) X(PQfreemem) X(PQftype) X(PQgetCancel) \
    X(PQgetCopyData) X(PQgetResult) X(PQgetisnull) X(PQgetlength) \
    X(PQgetvalue) X(PQnfields) X(PQnparams) X(PQntuples) X(PQparamtype) \
    X(PQprepare) X(PQputCopyData) X(PQputCopyEnd) X(PQresultErrorField) \
    X(PQresultMemorySize) X(PQresultStatus) X(PQsendQuery) \
    X(PQsendQueryPrepared) X(PQserverVersion) X(PQsetNoticeProcessor) \
    X(PQsetSingleRowMode) X(PQsocket) X(PQstatus) X(PQtransactionStatus)

#define WEIR_PQ_MEMBER(f) __typeof__(f) *f;
struct weir_pq_api {
    WEIR_PQ_FUNCS(WEIR_PQ_MEMBER)
};
#undef WEIR_PQ_MEMBER

extern struct weir_pq_api weir_pq;

/*
 * Load libpq (libpq.so.5) and resolve every function above, once per
 * process; later calls return at once. WEIR_OK, or WEIR_EIO with the
 * reason in err (err may be NULL when errlen is 0).
 */
int weir_pq_load(char *err, size_t errlen);

#ifndef WEIR_PQ_LOADER
#define PQbinaryTuples (weir_pq.PQbinaryTuples)
#define PQcancel (weir_pq.PQcancel)
#define PQclear (weir_pq.PQclear)
#define PQcmdTuples (weir_pq.PQcmdTuples)
#define PQconnectdbParams (weir_pq.PQconnectdbParams)
#define PQdescribePrepared (weir_pq.PQdescribePrepared)
#define PQerrorMessage (weir_pq.PQerrorMessage)
#define PQexec (weir_pq.PQexec)
#define PQexecParams (weir_pq.PQexecParams)
#define PQexecPrepared (weir_pq.PQexecPrepared)
#define PQfinish (weir_pq.PQfinish)
#define PQfname (weir_pq.PQfname)
#define PQfmod (weir_pq.PQfmod)
#define PQfreeCancel (weir_pq.PQfreeCancel)
#define PQfreemem (weir_pq.PQfreemem)
#define PQftype (weir_pq.PQftype)
#define PQgetCancel (weir_pq.PQgetCancel)
#define PQgetCopyData (weir_pq.PQgetCopyData)
#define PQgetResult (weir_pq.PQgetResult)
#define PQgetisnull (weir_pq.PQgetisnull)
#define PQgetlength (weir_pq.PQgetlength)
#define PQgetvalue (weir_pq.PQgetvalue)
#define PQnfields (weir_pq.PQnfields)
#define PQnparams (weir_pq.PQnparams)
#define PQntuples (weir_pq.PQntuples)
#define PQparamtype (weir_pq.PQparamtype)
#define PQprepare (weir_pq.PQprepare)
#define PQputCopyData (weir_pq.PQputCopyData)
#define PQputCopyEnd (weir_pq.PQputCopyEnd)
#define PQresultErrorField (weir_pq.PQresultErrorField)
#define PQresultMemorySize (weir_pq.PQresultMemorySize)
#define PQresultStatus (weir_pq.PQresultStatus)
#define PQsendQuery (weir_pq.PQsendQuery)
#define PQsendQueryPrepared (weir_pq.PQsendQueryPrepared)
#define PQserverVersion (weir_pq.PQserverVersion)
#define PQsetNoticeProcessor (weir_pq.PQsetNoticeProcessor)
#define PQsetSingleRowMode (weir_pq.PQsetSingleRowMode)
#define PQsocket (weir_pq.PQsocket)
#define PQstatus (weir_pq.PQstatus)
#define PQtransactionStatus (weir_pq.PQtransactionStatus)
#endif

#endif
