/* intent.c -- tool calls that must not run twice: intend, settle, and the intents of a run.
 *
 * An intent and its outcome are ordinary steps (kind "intent", kind "tool")
 * whose content names the key, so nothing outside the steps table holds
 * them: export, import, store_write and retention carry them as they carry
 * every step, and no schema change was needed. A handle keeps the keys of
 * its run in a hash table (key -> intent seq, name, settled): a run begun by
 * the handle starts with none, a resumed run's are read once, at its first
 * intend or settle. One writer per run (the fence) makes that table the
 * truth for as long as the handle owns the run, so each intend or settle is
 * a lookup and one durable step, whatever the run's length. */
#include "internal.h"
#include "json.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCAN_BATCH 256

/* ---- the keys of a run ---------------------------------------------------- */

typedef struct intent_slot {
    const char *key;          /* NULL: empty slot */
    const char *name;
    int64_t intent_seq;
    int64_t index;            /* the settled flag (a handle) or the list index (a listing) */
} intent_slot;

struct ar_intent_map {
    const ar_allocator *alloc;
    int owns;                 /* the slots' key and name were allocated here (one block each) */
    size_t n, cap;            /* cap a power of two, or 0 */
    intent_slot *slots;
};

static uint64_t hash_key(const char *s)
{
    uint64_t h = 1469598103934665603ULL;   /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static intent_slot *map_find(const ar_intent_map *m, const char *key)
{
    if (!m->cap)
        return NULL;
    for (size_t i = hash_key(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (!m->slots[i].key)
            return NULL;
        if (strcmp(m->slots[i].key, key) == 0)
            return &m->slots[i];
    }
}

/* Makes room for one more key (load at most 1/2): AR_OK or AR_ENOMEM, the
 * map unchanged then. */
static int map_reserve(ar_intent_map *m)
{
    if ((m->n + 1) * 2 <= m->cap)
        return AR_OK;
    size_t cap = m->cap ? m->cap * 2 : 16;
    intent_slot *slots = ar_mem_alloc(m->alloc, cap * sizeof *slots);
    if (!slots)
        return AR_ENOMEM;
    memset(slots, 0, cap * sizeof *slots);
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slots[i].key)
            continue;
        size_t k = hash_key(m->slots[i].key) & (cap - 1);
        while (slots[k].key)
            k = (k + 1) & (cap - 1);
        slots[k] = m->slots[i];
    }
    ar_mem_free(m->alloc, m->slots);
    m->slots = slots;
    m->cap = cap;
    return AR_OK;
}

/* Puts a key not in the map into it; map_reserve came first. */
static intent_slot *map_put(ar_intent_map *m, const intent_slot *s)
{
    size_t k = hash_key(s->key) & (m->cap - 1);
    while (m->slots[k].key)
        k = (k + 1) & (m->cap - 1);
    m->slots[k] = *s;
    m->n++;
    return &m->slots[k];
}

static void map_clear(ar_intent_map *m)
{
    if (m->owns)
        for (size_t i = 0; i < m->cap; i++)
            if (m->slots[i].key)
                ar_mem_free(m->alloc, (void *)m->slots[i].key);
    ar_mem_free(m->alloc, m->slots);
    m->slots = NULL;
    m->n = m->cap = 0;
}

void ar_intent_map_free(const ar_allocator *a, ar_intent_map *m)
{
    if (!m)
        return;
    map_clear(m);
    ar_mem_free(a, m);
}

/* ---- reading the content of intent and tool steps ------------------------- */

/* The content is valid JSON (checked first), so these only walk it. */

static const char *skip_space(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static const char *skip_string(const char *p, const char *e)
{
    for (p++; p < e && *p != '"'; p++)
        if (*p == '\\')
            p++;
    return p < e ? p + 1 : e;
}

static const char *skip_value(const char *p, const char *e)
{
    if (p < e && *p == '"')
        return skip_string(p, e);
    if (p < e && (*p == '{' || *p == '[')) {
        int depth = 0;
        while (p < e) {
            if (*p == '"') {
                p = skip_string(p, e);
                continue;
            }
            if (*p == '{' || *p == '[')
                depth++;
            else if (*p == '}' || *p == ']') {
                if (--depth == 0)
                    return p + 1;
            }
            p++;
        }
        return e;
    }
    while (p < e && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
        p++;
    return p;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return 0;
}

static unsigned long hex4(const char *p)
{
    return (unsigned long)(hex_digit(p[0]) << 12 | hex_digit(p[1]) << 8 | hex_digit(p[2]) << 4 | hex_digit(p[3]));
}

/* Decodes the JSON string [p, e) (quotes included, valid JSON) into dst,
 * which holds e - p bytes (a decoded string is never longer); returns its
 * length, or (size_t)-1 when it holds a NUL byte (no key of the API does). */
static size_t decode_string(const char *p, const char *e, char *dst)
{
    size_t n = 0;
    for (p++, e--; p < e; p++) {
        if (*p != '\\') {
            dst[n++] = *p;
            continue;
        }
        p++;
        unsigned long c;
        switch (*p) {
        case 'b': dst[n++] = '\b'; continue;
        case 'f': dst[n++] = '\f'; continue;
        case 'n': dst[n++] = '\n'; continue;
        case 'r': dst[n++] = '\r'; continue;
        case 't': dst[n++] = '\t'; continue;
        case 'u': break;
        default: dst[n++] = *p; continue;
        }
        c = hex4(p + 1);
        p += 4;
        if (c >= 0xD800 && c < 0xDC00) {   /* a pair (the JSON is valid: the low half follows) */
            c = 0x10000 + ((c - 0xD800) << 10) + (hex4(p + 3) - 0xDC00);
            p += 6;
        }
        if (c == 0)
            return (size_t)-1;
        if (c < 0x80) {
            dst[n++] = (char)c;
        } else if (c < 0x800) {
            dst[n++] = (char)(0xC0 | c >> 6);
            dst[n++] = (char)(0x80 | (c & 0x3F));
        } else if (c < 0x10000) {
            dst[n++] = (char)(0xE0 | c >> 12);
            dst[n++] = (char)(0x80 | (c >> 6 & 0x3F));
            dst[n++] = (char)(0x80 | (c & 0x3F));
        } else {
            dst[n++] = (char)(0xF0 | c >> 18);
            dst[n++] = (char)(0x80 | (c >> 12 & 0x3F));
            dst[n++] = (char)(0x80 | (c >> 6 & 0x3F));
            dst[n++] = (char)(0x80 | (c & 0x3F));
        }
    }
    return n;
}

/* The members of an intent or tool step's content, as spans of its text
 * (s NULL when absent). */
typedef struct parts {
    ar_db_text key, args, intent, result, failed;
} parts;

/* Fills *out from the top-level members of an object; 0 when the text is
 * not an object. Member names are matched as written (the library writes
 * them plainly). */
static int split_object(const char *s, size_t len, parts *out)
{
    memset(out, 0, sizeof *out);
    const char *e = s + len, *p = skip_space(s, e);
    if (p == e || *p != '{')
        return 0;
    p = skip_space(p + 1, e);
    while (p < e && *p == '"') {
        const char *name = p + 1, *name_end = skip_string(p, e) - 1;
        p = skip_space(name_end + 1, e);
        p = skip_space(p + 1, e);          /* the ':' */
        const char *v = p;
        p = skip_value(p, e);
        ar_db_text t = { v, (size_t)(p - v) };
        size_t n = (size_t)(name_end - name);
#define MEMBER(word) (n == sizeof word - 1 && memcmp(name, word, n) == 0)
        if (MEMBER("key"))
            out->key = t;
        else if (MEMBER("args"))
            out->args = t;
        else if (MEMBER("intent"))
            out->intent = t;
        else if (MEMBER("result"))
            out->result = t;
        else if (MEMBER("failed"))
            out->failed = t;
#undef MEMBER
        p = skip_space(p, e);
        if (p < e && *p == ',')
            p = skip_space(p + 1, e);
    }
    return 1;
}

int ar_intent_key_of(const char *content, size_t len, char *out, size_t cap)
{
    parts pt;
    if (!content || !split_object(content, len, &pt) || !pt.key.s || pt.key.s[0] != '"' || !pt.intent.s ||
        !pt.result.s || pt.key.len > cap)
        return 0;
    size_t n = decode_string(pt.key.s, pt.key.s + pt.key.len, out);
    if (n == (size_t)-1 || n == 0)
        return 0;
    out[n] = '\0';
    return 1;
}

/* An intent step or an outcome found in a run's steps. */
typedef struct scan_item {
    int is_outcome;
    const char *key;          /* decoded, NUL-terminated (scratch: copy to keep) */
    ar_db_text name;          /* intent: its step's name */
    ar_db_text args;          /* intent: its args */
    ar_db_text result;        /* outcome: its result */
    int failed;
    int64_t seq;              /* the step's */
    int64_t intent_seq;       /* outcome: the intent it settles */
} scan_item;

typedef int (*scan_visit)(void *ud, const scan_item *it);

typedef struct scan {
    const ar_allocator *alloc;
    const char *run_id;
    ar_err *err;
    scan_visit visit;
    void *ud;
    char *buf; size_t cap;    /* decoded keys */
    int64_t last;             /* the last seq seen */
    size_t rows;
} scan;

static int text_is(ar_db_text t, const char *word)
{
    size_t n = strlen(word);
    return t.s && t.len == n && memcmp(t.s, word, n) == 0;
}

/* A step row: an intent step, or a tool step naming an intent, goes to the
 * visitor; other steps (and steps of those kinds not written by intend or
 * settle) are passed over. */
static int scan_row(void *ud, const ar_db_step_row *row)
{
    scan *sc = ud;
    sc->last = row->seq;
    sc->rows++;
    int is_intent = text_is(row->kind, "intent"), is_tool = text_is(row->kind, "tool");
    if ((!is_intent && !is_tool) || !row->content.s)
        return AR_OK;
    char owner[64];
    snprintf(owner, sizeof owner, "run %s step %" PRId64, sc->run_id, row->seq);
    int rc = ar_row_json_check(row->content, owner, "content", sc->err);
    if (rc)
        return rc;
    parts pt;
    if (!split_object(row->content.s, row->content.len, &pt) || !pt.key.s || pt.key.s[0] != '"')
        return AR_OK;
    scan_item it;
    memset(&it, 0, sizeof it);
    it.seq = row->seq;
    if (is_intent) {
        if (!pt.args.s || !row->name.s || row->name.len == 0)
            return AR_OK;
        it.name = row->name;
        it.args = pt.args;
    } else {
        if (!pt.intent.s || !pt.result.s)
            return AR_OK;
        it.is_outcome = 1;
        it.result = pt.result;
        it.failed = pt.failed.s && pt.failed.len == 4 && memcmp(pt.failed.s, "true", 4) == 0;
        char num[24];
        if (pt.intent.len >= sizeof num)
            return AR_OK;
        memcpy(num, pt.intent.s, pt.intent.len);
        num[pt.intent.len] = '\0';
        char *end;
        long long v = strtoll(num, &end, 10);
        if (*end || v < 1 || v >= row->seq)
            return AR_OK;
        it.intent_seq = v;
    }
    if (pt.key.len + 1 > sc->cap) {
        char *b = ar_mem_realloc(sc->alloc, sc->buf, pt.key.len + 1);
        if (!b)
            return ar_fail(sc->err, AR_ENOMEM, "out of memory reading the intents of run %s", sc->run_id);
        sc->buf = b;
        sc->cap = pt.key.len + 1;
    }
    size_t n = decode_string(pt.key.s, pt.key.s + pt.key.len, sc->buf);
    if (n == (size_t)-1 || n == 0)
        return AR_OK;
    sc->buf[n] = '\0';
    it.key = sc->buf;
    return sc->visit(sc->ud, &it);
}

/* Visits the intents and outcomes among the steps of run `n` in seq order,
 * SCAN_BATCH steps per read. */
static int scan_run(ar_store *store, int64_t n, const char *run_id, ar_err *err, scan_visit visit, void *ud)
{
    scan sc = { &store->alloc, run_id, err, visit, ud, NULL, 0, 0, 0 };
    int rc;
    do {
        sc.rows = 0;
        rc = store->be->steps_fetch(store->db, n, sc.last + 1, SCAN_BATCH, scan_row, &sc, err);
    } while (rc == AR_OK && sc.rows == SCAN_BATCH);
    ar_mem_free(&store->alloc, sc.buf);
    return rc;
}

/* ---- a handle's keys ------------------------------------------------------ */

/* Adds an intent to a handle's map, copying key and name into one block. */
static int map_add_owned(ar_intent_map *m, const char *key, const char *name, size_t name_len, int64_t seq)
{
    size_t klen = strlen(key);
    char *block;
    if (map_reserve(m) || !(block = ar_mem_alloc(m->alloc, klen + name_len + 2)))
        return AR_ENOMEM;
    memcpy(block, key, klen + 1);
    memcpy(block + klen + 1, name, name_len);
    block[klen + 1 + name_len] = '\0';
    intent_slot s = { block, block + klen + 1, seq, 0 };
    map_put(m, &s);
    return AR_OK;
}

static int load_visit(void *ud, const scan_item *it)
{
    ar_run *run = ud;
    intent_slot *s = map_find(run->intents, it->key);
    if (!it->is_outcome) {
        if (s)   /* a second intent step of a key (not the library's): the first one counts */
            return AR_OK;
        if (map_add_owned(run->intents, it->key, it->name.s, it->name.len, it->seq))
            return ar_fail(&run->err, AR_ENOMEM, "out of memory reading the intents of run %s", run->id);
        return AR_OK;
    }
    if (s && s->intent_seq == it->intent_seq)
        s->index = 1;
    return AR_OK;
}

/* The handle's map, made (and, for a resumed run, filled from its steps)
 * on first use. */
static int intents_ready(ar_run *run)
{
    if (run->intents && run->intents_loaded)
        return AR_OK;
    if (!run->intents) {
        if (!(run->intents = ar_mem_alloc(&run->alloc, sizeof *run->intents)))
            return ar_fail(&run->err, AR_ENOMEM, "out of memory reading the intents of run %s", run->id);
        memset(run->intents, 0, sizeof *run->intents);
        run->intents->alloc = &run->alloc;
        run->intents->owns = 1;
    }
    if (run->intents_loaded)
        return AR_OK;
    ar_store *store = run->store;
    int rc = scan_run(store, run->key, run->id, &run->err, load_visit, run);
    if (rc) {
        map_clear(run->intents);   /* read again, whole, next time */
        return rc;
    }
    run->intents_loaded = 1;
    return AR_OK;
}

/* ---- intend and settle ---------------------------------------------------- */

/* Appends JSON string text for s (valid UTF-8) to *buf at *len. */
static int put_json_string(const ar_allocator *a, char **buf, size_t *cap, size_t *len, const char *s)
{
    size_t n = strlen(s), need = *len + n * 6 + 3;
    if (need > *cap) {
        char *b = ar_mem_realloc(a, *buf, need);
        if (!b)
            return AR_ENOMEM;
        *buf = b;
        *cap = need;
    }
    char *d = *buf + *len;
    *d++ = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            *d++ = '\\';
            *d++ = (char)*p;
        } else if (*p == '\n' || *p == '\t' || *p == '\r') {
            *d++ = '\\';
            *d++ = *p == '\n' ? 'n' : *p == '\t' ? 't' : 'r';
        } else if (*p < 0x20) {
            d += snprintf(d, 7, "\\u%04x", *p);
        } else {
            *d++ = (char)*p;
        }
    }
    *d++ = '"';
    *len = (size_t)(d - *buf);
    return AR_OK;
}

static int put_raw(const ar_allocator *a, char **buf, size_t *cap, size_t *len, const char *s, size_t n)
{
    if (*len + n + 1 > *cap) {
        char *b = ar_mem_realloc(a, *buf, *len + n + 1);
        if (!b)
            return AR_ENOMEM;
        *buf = b;
        *cap = *len + n + 1;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    return AR_OK;
}

/* Checks the JSON value given to intend or settle: NULL is JSON null. */
static int value_check(ar_run *run, const char *field, const char **json, size_t *len)
{
    if (!*json) {
        *json = "null";
        *len = 4;
        return AR_OK;
    }
    if (*len == AR_NUL_TERMINATED)
        *len = strlen(*json);
    return ar_json_check(&run->err, field, *json, *len, 0);
}

/* Forgets the handle's keys: the next intend or settle reads them again. */
static void intents_forget(ar_run *run)
{
    run->intents_loaded = 0;
    if (run->intents)
        map_clear(run->intents);
}

/* A write of this handle failed after it may have reached the store (a
 * connection cut after the commit was sent): before the next write the run
 * learns whether that step is there. When it is `retry` (the same intent or
 * outcome, the failed call made again) *same is set and it counts as
 * recorded now. Either way the handle's keys are read again, since a step
 * the map never saw may be in the run. */
static int learn_unsure(ar_run *run, const ar_step *retry, size_t len, int *same)
{
    *same = 0;
    int rc = ar_run_unsure_settle(run, retry, len, same);
    intents_forget(run);
    return rc;
}

/* Builds the content of an intent step into *buf. */
static int intent_content(ar_run *run, char **buf, size_t *n, const char *key, const char *args, size_t len)
{
    size_t cap = 0;
    const ar_allocator *a = &run->alloc;
    *buf = NULL;
    *n = 0;
    if (put_raw(a, buf, &cap, n, "{\"key\":", 7) || put_json_string(a, buf, &cap, n, key) ||
        put_raw(a, buf, &cap, n, ",\"args\":", 8) || put_raw(a, buf, &cap, n, args, len) ||
        put_raw(a, buf, &cap, n, "}", 1))
        return ar_fail(&run->err, AR_ENOMEM, "out of memory recording an intent");
    return AR_OK;
}

/* Builds the content of the tool step settling intent `intent_seq` into *buf. */
static int outcome_content(ar_run *run, char **buf, size_t *n, int64_t intent_seq, const char *key,
                           const char *result, size_t len, int failed)
{
    size_t cap = 0;
    const ar_allocator *a = &run->alloc;
    char head[40];
    int hn = snprintf(head, sizeof head, "{\"intent\":%" PRId64 ",\"key\":", intent_seq);
    ar_mem_free(a, *buf);
    *buf = NULL;
    *n = 0;
    if (put_raw(a, buf, &cap, n, head, (size_t)hn) || put_json_string(a, buf, &cap, n, key) ||
        put_raw(a, buf, &cap, n, ",\"result\":", 10) || put_raw(a, buf, &cap, n, result, len) ||
        (failed && put_raw(a, buf, &cap, n, ",\"failed\":true", 14)) || put_raw(a, buf, &cap, n, "}", 1))
        return ar_fail(&run->err, AR_ENOMEM, "out of memory settling an intent");
    return AR_OK;
}

int ar_run_intend(int64_t *out, ar_run *run, const char *key, const char *name, const char *args_json, size_t len)
{
    if (out)
        *out = 0;
    if (!run)
        return AR_EMISUSE;
    int rc;
    if ((rc = ar_run_writable(run, "record an intent")) || (rc = ar_text_check(&run->err, "key", key, 1, 1)) ||
        (rc = ar_text_check(&run->err, "name", name, 1, 1)) || (rc = value_check(run, "args", &args_json, &len)))
        return rc;
    char *content = NULL;
    size_t n = 0;
    int64_t seq = 0;
    if ((rc = intent_content(run, &content, &n, key, args_json, len)))
        goto cleanup;
    ar_step step = AR_STEP_INIT;
    step.kind = "intent";
    step.name = name;
    step.content = content;
    step.content_len = n;
    if (run->unsure) {
        int same;
        if ((rc = learn_unsure(run, &step, n, &same)))
            goto cleanup;
        if (same) {
            /* the intent of the call that failed is there: this is it */
            seq = run->totals.iterations;
            goto done;
        }
    }
    if ((rc = intents_ready(run)))
        goto cleanup;
    if (map_find(run->intents, key)) {
        rc = ar_fail(&run->err, AR_ESTATE, "intent key '%.200s' is already used in run %s", key, run->id);
        goto cleanup;
    }
    if (map_reserve(run->intents)) {
        rc = ar_fail(&run->err, AR_ENOMEM, "out of memory recording an intent");
        goto cleanup;
    }
    if ((rc = ar_run_step(&seq, run, &step))) {
        if (run->unsure)   /* it may be there: learnt, with the keys, by the next write */
            intents_forget(run);
        goto cleanup;
    }
    /* durable now: a key the handle cannot remember would let a second
     * intend through, so the handle reads the run's keys again next time */
    if (map_add_owned(run->intents, key, name, strlen(name), seq))
        intents_forget(run);
done:
    if (out)
        *out = seq;
cleanup:
    ar_mem_free(&run->alloc, content);
    return rc;
}

int ar_run_settle(int64_t *out, ar_run *run, const char *key, const char *result_json, size_t len, int failed)
{
    if (out)
        *out = 0;
    if (!run)
        return AR_EMISUSE;
    int rc;
    if ((rc = ar_run_writable(run, "settle an intent")) || (rc = ar_text_check(&run->err, "key", key, 1, 1)) ||
        (rc = value_check(run, "result", &result_json, &len)) || (rc = intents_ready(run)))
        return rc;
    char *content = NULL;
    size_t n = 0;
    int64_t seq = 0;
    ar_step step = AR_STEP_INIT;
    step.kind = "tool";
    intent_slot *s = map_find(run->intents, key);
    if (run->unsure) {
        /* the step left unsure may be this very outcome (the call retried),
         * whether or not the map already read it */
        int same = 0;
        if (s) {
            if ((rc = outcome_content(run, &content, &n, s->intent_seq, key, result_json, len, failed)))
                goto cleanup;
            step.name = s->name;
            step.content = content;
            step.content_len = n;
        }
        if ((rc = learn_unsure(run, step.content ? &step : NULL, n, &same)))
            goto cleanup;
        if (same) {
            seq = run->totals.iterations;
            goto done;
        }
        if ((rc = intents_ready(run)))
            goto cleanup;
        s = map_find(run->intents, key);
    }
    if (!s) {
        rc = ar_fail(&run->err, AR_ESTATE, "intent key '%.200s' was never intended in run %s", key, run->id);
        goto cleanup;
    }
    if (s->index) {
        rc = ar_fail(&run->err, AR_ESTATE, "intent key '%.200s' is already settled in run %s", key, run->id);
        goto cleanup;
    }
    if ((rc = outcome_content(run, &content, &n, s->intent_seq, key, result_json, len, failed)))
        goto cleanup;
    step.name = s->name;
    step.content = content;
    step.content_len = n;
    if ((rc = ar_run_step(&seq, run, &step))) {
        if (run->unsure)
            intents_forget(run);
        goto cleanup;
    }
    s->index = 1;
done:
    if (out)
        *out = seq;
cleanup:
    ar_mem_free(&run->alloc, content);
    return rc;
}

/* ---- the intents of a run ------------------------------------------------- */

const char *ar_intent_status_name(ar_intent_status status)
{
    switch (status) {
    case AR_INTENT_PENDING: return "pending";
    case AR_INTENT_SETTLED: return "settled";
    case AR_INTENT_FAILED: return "failed";
    }
    return NULL;
}

typedef struct intent_list_box {
    ar_allocator alloc;
    ar_arena arena;
    ar_intent_list list;
    size_t cap;
    ar_intent_map map;        /* key -> index in list (keys in the arena) */
    ar_err *err;
    int oom;
} intent_list_box;

static int list_visit(void *ud, const scan_item *it)
{
    intent_list_box *b = ud;
    intent_slot *s = map_find(&b->map, it->key);
    if (it->is_outcome) {
        if (!s || s->intent_seq != it->intent_seq)
            return AR_OK;
        ar_intent *x = &b->list.items[s->index];
        if (x->status != AR_INTENT_PENDING)
            return AR_OK;
        x->status = it->failed ? AR_INTENT_FAILED : AR_INTENT_SETTLED;
        x->result = ar_arena_strndup(&b->arena, it->result.s, it->result.len, &b->oom);
        x->result_seq = it->seq;
    } else {
        if (s)
            return AR_OK;
        if (b->list.n == b->cap) {
            size_t cap = b->cap ? b->cap * 2 : 16;
            ar_intent *items = ar_mem_realloc(&b->alloc, b->list.items, cap * sizeof *items);
            if (!items)
                return ar_fail(b->err, AR_ENOMEM, "out of memory listing intents");
            b->list.items = items;
            b->cap = cap;
        }
        ar_intent *x = &b->list.items[b->list.n];
        memset(x, 0, sizeof *x);
        x->key = ar_arena_strdup(&b->arena, it->key, &b->oom);
        x->name = ar_arena_strndup(&b->arena, it->name.s, it->name.len, &b->oom);
        x->args = ar_arena_strndup(&b->arena, it->args.s, it->args.len, &b->oom);
        x->status = AR_INTENT_PENDING;
        x->intent_seq = it->seq;
        if (b->oom || map_reserve(&b->map))
            return ar_fail(b->err, AR_ENOMEM, "out of memory listing intents");
        intent_slot slot = { x->key, x->name, it->seq, (int64_t)b->list.n };
        map_put(&b->map, &slot);
        b->list.n++;
    }
    return b->oom ? ar_fail(b->err, AR_ENOMEM, "out of memory listing intents") : AR_OK;
}

int ar_store_intents(ar_intent_list **out, ar_store *store, const char *run_id)
{
    int rc = ar_store_usable(store);
    if (out)
        *out = NULL;
    if (rc)
        return rc;
    if (!out || !run_id)
        return ar_fail(&store->err, AR_EMISUSE, "out and run_id are required");
    int64_t key = 0;
    if ((rc = ar_store_run_key(store, run_id, &key)))
        return rc;
    intent_list_box *b = ar_mem_alloc(&store->alloc, sizeof *b);
    if (!b)
        return ar_fail(&store->err, AR_ENOMEM, "out of memory listing intents");
    memset(b, 0, sizeof *b);
    b->alloc = store->alloc;
    b->arena.alloc = &b->alloc;
    b->map.alloc = &b->alloc;
    b->err = &store->err;
    rc = scan_run(store, key, run_id, &store->err, list_visit, b);
    /* the map's keys point into the arena: only its table goes */
    map_clear(&b->map);
    if (rc) {
        ar_intent_list_free(&b->list);
        return rc;
    }
    *out = &b->list;
    return AR_OK;
}

void ar_intent_list_free(ar_intent_list *list)
{
    if (!list)
        return;
    intent_list_box *b = (intent_list_box *)((char *)list - offsetof(intent_list_box, list));
    ar_allocator a = b->alloc;
    ar_mem_free(&a, b->list.items);
    ar_arena_release(&b->arena);
    a.free(a.ud, b);
}
