"""pg_psycopg2.py - the psycopg2 peer of tests/bench/pg_etl.sh (run by it).

usage: /usr/bin/python3 pg_psycopg2.py copy|values SRC DST
env:   WEIR_TEST_PG_URL (libpq URL), BATCH (rows per fetch, 10000),
       PAGE (rows per INSERT of the 'values' variant, 1000)

Reads SRC with a server-side (named) cursor in batches of BATCH rows, applies
the benchmark's transform (name upper-cased, score doubled) in Python and
writes DST, either with COPY ... FROM STDIN fed from an in-memory text
buffer per batch ('copy') or with psycopg2.extras.execute_values ('values').
Source and target use separate connections, like an ETL between two
databases; the load is one transaction. Prints the rows written.
"""
import io
import os
import sys

import psycopg2
import psycopg2.extras

# COPY text format: backslash, tab, newline and CR must be escaped
_ESC = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_field(v):
    if v is None:
        return "\\N"
    if v is True:
        return "t"
    if v is False:
        return "f"
    if isinstance(v, str):
        return v.translate(_ESC)
    if isinstance(v, float):
        return repr(v)  # shortest exact text
    return str(v)       # int; datetime prints ISO with its offset


def transform(row):
    rid, name, score, at, ok = row
    return (rid, name.upper() if name is not None else None,
            score * 2 if score is not None else None, at, ok)


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("copy", "values"):
        sys.stderr.write(__doc__)
        return 2
    variant, src, dst = sys.argv[1:]
    batch = int(os.environ.get("BATCH", "10000"))
    page = int(os.environ.get("PAGE", "1000"))
    url = os.environ["WEIR_TEST_PG_URL"]
    rconn = psycopg2.connect(url)
    wconn = psycopg2.connect(url)
    rcur = rconn.cursor(name="pg_etl_src")
    rcur.itersize = batch
    rcur.execute("SELECT id, name, score, at, ok FROM " + src)
    wcur = wconn.cursor()
    copy_sql = "COPY %s (id, name, score, at, ok) FROM STDIN" % dst
    insert_sql = "INSERT INTO %s (id, name, score, at, ok) VALUES %%s" % dst
    n = 0
    while True:
        rows = rcur.fetchmany(batch)
        if not rows:
            break
        out = [transform(r) for r in rows]
        if variant == "copy":
            buf = io.StringIO()
            buf.write("".join("\t".join(map(copy_field, r)) + "\n" for r in out))
            buf.seek(0)
            wcur.copy_expert(copy_sql, buf)
        else:
            psycopg2.extras.execute_values(wcur, insert_sql, out, page_size=page)
        n += len(out)
    wconn.commit()
    rcur.close()
    rconn.commit()
    rconn.close()
    wconn.close()
    print(n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
