/* import.c -- the JSON Lines import (and the copy of a store, which pipes
 * the export into it). Each line is checked whole (ar_json_validate) and then
 * read by a small scanner that takes JSON values as the spans of text they
 * are in the line, so stored JSON comes back byte for byte. */
#include "internal.h"
#include "json.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a scanner over validated JSON text ---------------------------------- */

/* The text of one value in the line; s NULL: absent. */
typedef struct jv {
    const char *s;
    size_t n;
} jv;

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* The end of the value starting at p (the text is valid JSON). */
static const char *skip_value(const char *p, const char *end)
{
    if (*p == '"') {
        for (p++; p < end && *p != '"'; p++)
            if (*p == '\\')
                p++;
        return p + 1;
    }
    if (*p == '{' || *p == '[') {
        size_t depth = 0;
        for (; p < end; p++) {
            if (*p == '"') {
                for (p++; p < end && *p != '"'; p++)
                    if (*p == '\\')
                        p++;
            } else if (*p == '{' || *p == '[') {
                depth++;
            } else if (*p == '}' || *p == ']') {
                if (--depth == 0)
                    return p + 1;
            }
        }
        return end;
    }
    while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\t' && *p != '\n' &&
           *p != '\r')
        p++;
    return p;
}

/* Walks the members of an object or the items of an array. */
typedef struct jiter {
    const char *p, *end;
} jiter;

static void iter_open(jiter *it, jv v)
{
    it->p = skip_ws(v.s + 1, v.s + v.n);
    it->end = v.s + v.n;
}

/* The next member (key with its quotes) or item; 0 at the end. */
static int iter_next(jiter *it, jv *key, jv *val)
{
    const char *p = skip_ws(it->p, it->end);
    if (p < it->end && *p == ',')
        p = skip_ws(p + 1, it->end);
    if (p >= it->end || *p == '}' || *p == ']')
        return 0;
    if (key) {
        const char *k = skip_value(p, it->end);
        key->s = p;
        key->n = (size_t)(k - p);
        p = skip_ws(k, it->end);
        p = skip_ws(p + 1, it->end); /* the colon */
    }
    const char *e = skip_value(p, it->end);
    val->s = p;
    val->n = (size_t)(e - p);
    it->p = e;
    return 1;
}

static int is_object(jv v) { return v.s && v.s[0] == '{'; }
static int is_array(jv v) { return v.s && v.s[0] == '['; }
static int is_string(jv v) { return v.s && v.s[0] == '"'; }
static int is_null(jv v) { return v.s && v.s[0] == 'n'; }

/* ---- one line ------------------------------------------------------------- */

typedef struct line_ctx {
    ar_store *store;
    ar_arena arena;         /* what the line's record borrows; released after the line */
    int64_t line;
    char path[160];         /* the field being read, for messages */
} line_ctx;

/* A bad line: AR_EJSON "line N: ..." (nothing of it is stored). */
static int bad(line_ctx *c, const char *fmt, ...)
{
    char msg[AR_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ar_fail(&c->store->err, AR_EJSON, "line %lld: %s", (long long)c->line, msg);
}

static int nomem(line_ctx *c)
{
    return ar_fail(&c->store->err, AR_ENOMEM, "line %lld: out of memory", (long long)c->line);
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

static unsigned hex4(const char *p)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++)
        v = v << 4 | (unsigned)hexval(p[i]);
    return v;
}

static size_t put_utf8(char *d, unsigned cp)
{
    if (cp < 0x80) { d[0] = (char)cp; return 1; }
    if (cp < 0x800) { d[0] = (char)(0xC0 | cp >> 6); d[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        d[0] = (char)(0xE0 | cp >> 12); d[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        d[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    d[0] = (char)(0xF0 | cp >> 18); d[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    d[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); d[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Decodes a JSON string (valid JSON) into the arena, NUL-terminated; *len
 * its bytes. A lone surrogate escape is not text: a bad line. */
static int decode_string(line_ctx *c, jv v, const char **out, size_t *len)
{
    char *d = ar_arena_alloc(&c->arena, v.n + 1);
    if (!d)
        return nomem(c);
    size_t k = 0;
    const char *p = v.s + 1, *end = v.s + v.n - 1;
    while (p < end) {
        if (*p != '\\') {
            d[k++] = *p++;
            continue;
        }
        p++;
        switch (*p) {
        case 'b': d[k++] = '\b'; p++; break;
        case 'f': d[k++] = '\f'; p++; break;
        case 'n': d[k++] = '\n'; p++; break;
        case 'r': d[k++] = '\r'; p++; break;
        case 't': d[k++] = '\t'; p++; break;
        case 'u': {
            unsigned cp = hex4(p + 1);
            p += 5;
            if (cp >= 0xD800 && cp <= 0xDBFF && end - p >= 6 && p[0] == '\\' && p[1] == 'u') {
                unsigned lo = hex4(p + 2);
                if (lo >= 0xDC00 && lo <= 0xDFFF) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    p += 6;
                }
            }
            if (cp >= 0xD800 && cp <= 0xDFFF)
                return bad(c, "%s holds a lone surrogate escape: not text", c->path);
            k += put_utf8(d + k, cp);
            break;
        }
        default: d[k++] = *p++; break; /* " \ / */
        }
    }
    d[k] = '\0';
    *out = d;
    *len = k;
    return AR_OK;
}

/* Sets c->path to prefix.name (or prefix[name] when name is NULL and idx >= 0). */
static void path_set(line_ctx *c, const char *prefix, const char *name)
{
    snprintf(c->path, sizeof c->path, "%s%s%s", prefix, name ? "." : "", name ? name : "");
}

/* Plain text (UTF-8 without NUL: the core's own check follows). */
static int get_text(line_ctx *c, jv v, const char **out)
{
    *out = NULL;
    if (!v.s || is_null(v))
        return AR_OK;
    if (!is_string(v))
        return bad(c, "%s must be a string", c->path);
    size_t len;
    int rc = decode_string(c, v, out, &len);
    if (rc == AR_OK && memchr(*out, '\0', len))
        return bad(c, "%s holds a NUL byte", c->path);
    return rc;
}

static int get_int(line_ctx *c, jv v, int64_t *out)
{
    if (!v.s || !(v.s[0] == '-' || (v.s[0] >= '0' && v.s[0] <= '9')))
        return bad(c, "%s must be an integer", c->path);
    for (size_t i = 0; i < v.n; i++)
        if (v.s[i] == '.' || v.s[i] == 'e' || v.s[i] == 'E')
            return bad(c, "%s must be an integer", c->path);
    char buf[32];
    if (v.n >= sizeof buf)
        return bad(c, "%s is out of range", c->path);
    memcpy(buf, v.s, v.n);
    buf[v.n] = '\0';
    errno = 0;
    long long x = strtoll(buf, NULL, 10);
    if (errno)
        return bad(c, "%s is out of range", c->path);
    *out = (int64_t)x;
    return AR_OK;
}

static int get_num(line_ctx *c, jv v, double *out)
{
    if (!v.s || !(v.s[0] == '-' || (v.s[0] >= '0' && v.s[0] <= '9')))
        return bad(c, "%s must be a number", c->path);
    char *buf = ar_arena_alloc(&c->arena, v.n + 1);
    if (!buf)
        return nomem(c);
    memcpy(buf, v.s, v.n);
    buf[v.n] = '\0';
    *out = strtod(buf, NULL);
    return AR_OK;
}

/* A JSON value copied NUL-terminated (the core's fields that take C strings). */
static int get_json(line_ctx *c, jv v, const char **out)
{
    int failed = 0;
    *out = ar_arena_strndup(&c->arena, v.s, v.n, &failed);
    return failed ? nomem(c) : AR_OK;
}

/* Reads the members of object v into vals[i] by names[i]; an unknown or
 * repeated key is a bad line. */
static int fields(line_ctx *c, jv v, const char *what, const char *const *names, jv *vals)
{
    size_t n = 0;
    while (names[n])
        n++;
    for (size_t i = 0; i < n; i++)
        vals[i].s = NULL, vals[i].n = 0;
    if (!is_object(v))
        return bad(c, "%s must be an object", what);
    jiter it;
    jv key, val;
    iter_open(&it, v);
    while (iter_next(&it, &key, &val)) {
        size_t i = 0;
        while (i < n && !(key.n == strlen(names[i]) + 2 && memcmp(key.s + 1, names[i], key.n - 2) == 0))
            i++;
        if (i == n)
            return bad(c, "unknown field %.*s in %s", (int)(key.n < 64 ? key.n : 64), key.s, what);
        if (vals[i].s)
            return bad(c, "field \"%s\" is given twice in %s", names[i], what);
        vals[i] = val;
    }
    return AR_OK;
}

/* A usage object: input/output/total tokens, a cost (runs), other counters. */
static int get_usage(line_ctx *c, jv v, const char *what, ar_usage *u, int with_cost)
{
    if (!is_object(v))
        return bad(c, "%s.usage must be an object", what);
    jiter it;
    jv key, val;
    size_t n = 0;
    iter_open(&it, v);
    while (iter_next(&it, &key, &val))
        n++;
    ar_counter *counters = n ? ar_arena_alloc(&c->arena, n * sizeof *counters) : NULL;
    if (n && !counters)
        return nomem(c);
    int64_t total = -1;
    size_t k = 0;
    int rc;
    iter_open(&it, v);
    while (iter_next(&it, &key, &val)) {
        const char *name;
        size_t len;
        snprintf(c->path, sizeof c->path, "%s.usage key", what);
        if ((rc = decode_string(c, key, &name, &len)))
            return rc;
        snprintf(c->path, sizeof c->path, "%s.usage.%.40s", what, name);
        if (with_cost && strcmp(name, "cost") == 0) {
            if ((rc = get_num(c, val, &u->cost)))
                return rc;
            continue;
        }
        int64_t x;
        if ((rc = get_int(c, val, &x)))
            return rc;
        if (strcmp(name, "input_tokens") == 0)
            u->input_tokens = x;
        else if (strcmp(name, "output_tokens") == 0)
            u->output_tokens = x;
        else if (strcmp(name, "total_tokens") == 0)
            total = x;
        else {
            counters[k].name = name;
            counters[k].value = x;
            k++;
        }
    }
    if (total >= 0 && total != u->input_tokens + u->output_tokens)
        return bad(c, "%s.usage.total_tokens must equal input_tokens + output_tokens", what);
    u->total_tokens = u->input_tokens + u->output_tokens;
    u->n_extra = k;
    u->extra = k ? counters : NULL;
    return AR_OK;
}

static const char *const step_names[] = {
    "seq", "kind", "name", "content", "usage", "cost", "duration_ms", "at", NULL
};
enum { S_SEQ, S_KIND, S_NAME, S_CONTENT, S_USAGE, S_COST, S_DURATION, S_AT };

static int get_step(line_ctx *c, jv v, size_t i, ar_step *s)
{
    char what[40];
    snprintf(what, sizeof what, "steps[%zu]", i + 1);
    jv f[8];
    int rc = fields(c, v, what, step_names, f);
    if (rc)
        return rc;
    ar_step init = AR_STEP_INIT;
    *s = init;
    if (!f[S_KIND].s)
        return bad(c, "%s.kind is required", what);
    path_set(c, what, "seq");
    if (f[S_SEQ].s && (rc = get_int(c, f[S_SEQ], &s->seq)))
        return rc;
    path_set(c, what, "kind");
    if ((rc = get_text(c, f[S_KIND], &s->kind)))
        return rc;
    path_set(c, what, "name");
    if ((rc = get_text(c, f[S_NAME], &s->name)))
        return rc;
    if (f[S_CONTENT].s) {
        s->content = f[S_CONTENT].s;
        s->content_len = f[S_CONTENT].n;
    }
    if (f[S_USAGE].s && (rc = get_usage(c, f[S_USAGE], what, &s->usage, 0)))
        return rc;
    path_set(c, what, "cost");
    if (f[S_COST].s && (rc = get_num(c, f[S_COST], &s->usage.cost)))
        return rc;
    path_set(c, what, "duration_ms");
    if (f[S_DURATION].s && (rc = get_int(c, f[S_DURATION], &s->duration_ms)))
        return rc;
    path_set(c, what, "at");
    if (f[S_AT].s && (rc = get_int(c, f[S_AT], &s->at)))
        return rc;
    return AR_OK;
}

static const char *const run_names[] = {
    "type", "id", "agent", "goal", "user", "edition", "parent", "status", "output", "error", "limit", "budget",
    "iterations", "usage", "latency_ms", "created_at", "finished_at", "updated_at", "metadata", "forked_from",
    "request", "response", "checkpoint", "steps", NULL
};
enum {
    R_TYPE, R_ID, R_AGENT, R_GOAL, R_USER, R_EDITION, R_PARENT, R_STATUS, R_OUTPUT, R_ERROR, R_LIMIT, R_BUDGET,
    R_ITERATIONS, R_USAGE, R_LATENCY, R_CREATED, R_FINISHED, R_UPDATED, R_METADATA, R_FORKED_FROM, R_REQUEST,
    R_RESPONSE, R_CHECKPOINT, R_STEPS, R_COUNT
};

/* Reads a run line into *r (borrowing from the line and c->arena). */
static int get_run(line_ctx *c, jv line, ar_record *r)
{
    jv f[R_COUNT];
    int rc = fields(c, line, "the run", run_names, f);
    if (rc)
        return rc;
    static const int required[] = { R_ID, R_AGENT, R_GOAL, R_STATUS, R_CREATED };
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++)
        if (!f[required[i]].s)
            return bad(c, "run.%s is required", run_names[required[i]]);
    ar_record init = AR_RECORD_INIT;
    *r = init;
    const struct { int field; const char **dst; } texts[] = {
        { R_ID, &r->id }, { R_AGENT, &r->agent }, { R_GOAL, &r->goal }, { R_USER, &r->user },
        { R_EDITION, &r->edition }, { R_PARENT, &r->parent }, { R_ERROR, &r->error },
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        path_set(c, "run", run_names[texts[i].field]);
        if ((rc = get_text(c, f[texts[i].field], texts[i].dst)))
            return rc;
    }
    const char *status;
    path_set(c, "run", "status");
    if ((rc = get_text(c, f[R_STATUS], &status)))
        return rc;
    if (!status || ar_status_parse(&r->status, status))
        return bad(c, "run.status is not a status name");
    if (f[R_OUTPUT].s && (rc = get_json(c, f[R_OUTPUT], &r->output)))
        return rc;
    if (f[R_LIMIT].s) {
        static const char *const limit_names[] = { "name", "value", "reached", NULL };
        jv l[3];
        if ((rc = fields(c, f[R_LIMIT], "run.limit", limit_names, l)))
            return rc;
        if (!l[0].s || !l[1].s || !l[2].s)
            return bad(c, "run.limit needs name, value and reached");
        path_set(c, "run.limit", "name");
        if ((rc = get_text(c, l[0], &r->limit.limit)))
            return rc;
        path_set(c, "run.limit", "value");
        if ((rc = get_num(c, l[1], &r->limit.limit_value)))
            return rc;
        path_set(c, "run.limit", "reached");
        if ((rc = get_num(c, l[2], &r->limit.value)))
            return rc;
    }
    if (f[R_BUDGET].s) {
        static const char *const budget_names[] = {
            "max_steps", "max_input_tokens", "max_output_tokens", "max_tokens", "max_cost", "max_seconds", NULL
        };
        jv b[6];
        if ((rc = fields(c, f[R_BUDGET], "run.budget", budget_names, b)))
            return rc;
        if ((rc = ar_budget_parse(&r->budget, f[R_BUDGET].s, f[R_BUDGET].n)) == AR_ECORRUPT)
            return bad(c, "run.budget must be an object of non-negative limits");
        if (rc)
            return nomem(c);
    }
    path_set(c, "run", "iterations");
    if (f[R_ITERATIONS].s && (rc = get_int(c, f[R_ITERATIONS], &r->iterations)))
        return rc;
    if (f[R_USAGE].s && (rc = get_usage(c, f[R_USAGE], "run", &r->usage, 1)))
        return rc;
    const struct { int field; int64_t *dst; } times[] = {
        { R_LATENCY, &r->latency_ms }, { R_CREATED, &r->created_at }, { R_FINISHED, &r->finished_at },
        { R_UPDATED, &r->updated_at },
    };
    for (size_t i = 0; i < sizeof times / sizeof times[0]; i++) {
        path_set(c, "run", run_names[times[i].field]);
        if (f[times[i].field].s && (rc = get_int(c, f[times[i].field], times[i].dst)))
            return rc;
    }
    if (f[R_METADATA].s && !is_null(f[R_METADATA])) {
        if (!is_object(f[R_METADATA]))
            return bad(c, "run.metadata must be an object");
        if ((rc = get_json(c, f[R_METADATA], &r->metadata)))
            return rc;
    }
    if (f[R_FORKED_FROM].s) {
        static const char *const from_names[] = { "run", "seq", NULL };
        jv k[2];
        if ((rc = fields(c, f[R_FORKED_FROM], "run.forked_from", from_names, k)))
            return rc;
        if (!k[0].s || !k[1].s)
            return bad(c, "run.forked_from needs run and seq");
        path_set(c, "run.forked_from", "run");
        if ((rc = get_text(c, k[0], &r->forked_from)))
            return rc;
        path_set(c, "run.forked_from", "seq");
        if ((rc = get_int(c, k[1], &r->forked_seq)))
            return rc;
    }
    if (f[R_REQUEST].s && (rc = get_json(c, f[R_REQUEST], &r->request)))
        return rc;
    if (f[R_RESPONSE].s && (rc = get_json(c, f[R_RESPONSE], &r->response)))
        return rc;
    if (f[R_CHECKPOINT].s) {
        static const char *const cp_names[] = { "state", "seq", NULL };
        jv k[2];
        if ((rc = fields(c, f[R_CHECKPOINT], "run.checkpoint", cp_names, k)))
            return rc;
        if (!k[0].s || !k[1].s)
            return bad(c, "run.checkpoint needs state and seq");
        if ((rc = get_json(c, k[0], &r->checkpoint)))
            return rc;
        path_set(c, "run.checkpoint", "seq");
        if ((rc = get_int(c, k[1], &r->checkpoint_seq)))
            return rc;
    }
    if (f[R_STEPS].s) {
        if (!is_array(f[R_STEPS]))
            return bad(c, "run.steps must be an array");
        jiter it;
        jv item;
        size_t n = 0;
        iter_open(&it, f[R_STEPS]);
        while (iter_next(&it, NULL, &item))
            n++;
        ar_step *steps = n ? ar_arena_alloc(&c->arena, n * sizeof *steps) : NULL;
        if (n && !steps)
            return nomem(c);
        size_t i = 0;
        iter_open(&it, f[R_STEPS]);
        while (iter_next(&it, NULL, &item)) {
            if ((rc = get_step(c, item, i, &steps[i])))
                return rc;
            i++;
        }
        r->steps = steps;
        r->n_steps = n;
    }
    return AR_OK;
}

static const char *const event_names[] = {
    "type", "id", "agent", "session", "event_type", "content", "metadata", "run", "at", NULL
};
enum { E_TYPE, E_ID, E_AGENT, E_SESSION, E_ETYPE, E_CONTENT, E_METADATA, E_RUN, E_AT, E_COUNT };

static int get_event(line_ctx *c, jv line, ar_event *e)
{
    jv f[E_COUNT];
    int rc = fields(c, line, "the event", event_names, f);
    if (rc)
        return rc;
    static const int required[] = { E_ID, E_AGENT, E_ETYPE, E_AT };
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++)
        if (!f[required[i]].s)
            return bad(c, "event.%s is required", event_names[required[i]]);
    ar_event init = AR_EVENT_INIT;
    *e = init;
    path_set(c, "event", "id");
    if ((rc = get_int(c, f[E_ID], &e->id)))
        return rc;
    if (e->id <= 0)
        return bad(c, "event.id must be a positive integer");
    path_set(c, "event", "agent");
    if ((rc = get_text(c, f[E_AGENT], &e->agent)))
        return rc;
    path_set(c, "event", "event_type");
    if ((rc = get_text(c, f[E_ETYPE], &e->type)))
        return rc;
    path_set(c, "event", "session");
    if (f[E_SESSION].s && (rc = get_int(c, f[E_SESSION], &e->session)))
        return rc;
    path_set(c, "event", "run");
    if ((rc = get_text(c, f[E_RUN], &e->run)))
        return rc;
    path_set(c, "event", "at");
    if ((rc = get_int(c, f[E_AT], &e->at)))
        return rc;
    path_set(c, "event", "content");
    if (f[E_CONTENT].s && !is_null(f[E_CONTENT])) {
        if (!is_string(f[E_CONTENT]))
            return bad(c, "event.content must be a string");
        if ((rc = decode_string(c, f[E_CONTENT], &e->content, &e->content_len)))
            return rc;
        if (e->content_len == 0)
            e->content_len = AR_NUL_TERMINATED;
    }
    if (f[E_METADATA].s && !is_null(f[E_METADATA])) {
        if (!is_object(f[E_METADATA]))
            return bad(c, "event.metadata must be an object");
        if ((rc = get_json(c, f[E_METADATA], &e->metadata)))
            return rc;
    }
    return AR_OK;
}

/* ---- storing -------------------------------------------------------------- */

typedef struct importer {
    ar_store *store;
    ar_import_report rep;
    int header;             /* the header line was read */
} importer;

/* Whether the stored event of id e->id is e (the visitor of a one-event listing). */
typedef struct same_event {
    const ar_event *e;
    int same;
} same_event;

static int text_eq(ar_db_text t, const char *s, size_t len)
{
    if (!t.s || !s)
        return !t.s && !s;
    return t.len == len && memcmp(t.s, s, len) == 0;
}

/* Whether stored metadata is what an export of it reads back as: the export
 * writes none as {} and line breaks between tokens as spaces. */
static int metadata_eq(ar_db_text t, const char *s)
{
    const char *a = t.s ? t.s : "{}", *b = s ? s : "{}";
    size_t n = t.s ? t.len : 2;
    if (strlen(b) != n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char x = a[i] == '\n' || a[i] == '\r' ? ' ' : a[i];
        char y = b[i] == '\n' || b[i] == '\r' ? ' ' : b[i];
        if (x != y)
            return 0;
    }
    return 1;
}

static int compare_event(void *ud, const ar_db_event_row *row)
{
    same_event *x = ud;
    const ar_event *e = x->e;
    x->same = row->id == e->id && row->session == e->session && row->at == e->at &&
              text_eq(row->agent, e->agent, strlen(e->agent)) && text_eq(row->type, e->type, strlen(e->type)) &&
              text_eq(row->content, e->content, e->content ? e->content_len : 0) &&
              metadata_eq(row->metadata, e->metadata) &&
              text_eq(row->run, e->run, e->run ? strlen(e->run) : 0);
    return 0;
}

static int import_event(importer *im, line_ctx *c, const ar_event *given)
{
    ar_store *store = im->store;
    ar_err *err = &store->err;
    ar_event e;
    int rc = ar_event_check(err, given, &e);
    if (rc == AR_EMISUSE || rc == AR_EJSON) {
        char msg[AR_ERRMSG_MAX];
        snprintf(msg, sizeof msg, "%s", err->msg);
        return bad(c, "event: %s", msg);
    }
    if (rc)
        return rc;
    int inserted = 0;
    if ((rc = store->be->event_put(store->db, &e, &inserted, err)))
        return rc;
    if (inserted) {
        im->rep.events++;
        return AR_OK;
    }
    /* the id is taken: by this very event (imported before), or by another */
    ar_event_query q = AR_EVENT_QUERY_INIT;
    q.agent = e.agent;
    int64_t key = e.id - 1;
    same_event x = { &e, 0 };
    if ((rc = store->be->events_list(store->db, &q, &key, 1, 1, compare_event, &x, err)))
        return rc;
    if (x.same) {
        im->rep.skipped++;
        return AR_OK;
    }
    int64_t id;
    if ((rc = store->be->event_insert(store->db, &e, &id, err)))
        return rc;
    im->rep.events++;
    return AR_OK;
}

static int import_run(importer *im, line_ctx *c, const ar_record *r)
{
    ar_store *store = im->store;
    int64_t tick = ar_id_tick(r->id);
    int rc;
    if (tick >= 0) {
        rc = store->be->run_exists(store->db, tick, r->id, &store->err);
        if (rc == AR_OK) {
            im->rep.skipped++;
            return AR_OK;
        }
        if (rc != AR_ENOTFOUND)
            return rc;
    }
    char id[AR_ID_LEN + 1];
    rc = ar_store_write_record(store, r, 1, id);
    if (rc == AR_EMISUSE || rc == AR_EJSON) {
        char msg[AR_ERRMSG_MAX];
        snprintf(msg, sizeof msg, "%s", store->err.msg);
        return bad(c, "run %s: %s", r->id, msg);
    }
    if (rc)
        return rc;
    im->rep.runs++;
    return AR_OK;
}

static int line_type(line_ctx *c, jv line, jv *type)
{
    jiter it;
    jv key, val;
    type->s = NULL;
    iter_open(&it, line);
    while (iter_next(&it, &key, &val))
        if (key.n == 6 && memcmp(key.s, "\"type\"", 6) == 0)
            *type = val;
    if (!type->s)
        return bad(c, "the line has no \"type\"");
    if (!is_string(*type))
        return bad(c, "\"type\" must be a string");
    return AR_OK;
}

static int type_is(jv t, const char *name)
{
    size_t n = strlen(name);
    return t.n == n + 2 && memcmp(t.s + 1, name, n) == 0;
}

/* Reads and stores one line (without its line break). */
static int import_line(importer *im, const char *text, size_t len)
{
    line_ctx c;
    memset(&c, 0, sizeof c);
    c.store = im->store;
    c.arena.alloc = &im->store->alloc;
    c.line = ++im->rep.lines;
    if (len && text[len - 1] == '\n')
        len--;
    if (len && text[len - 1] == '\r')
        len--;
    const char *p = skip_ws(text, text + len);
    if (p == text + len)
        return AR_OK;
    char why[160];
    if (ar_json_validate(text, len, why, sizeof why))
        return bad(&c, "not valid JSON: %s", why);
    jv line = { p, (size_t)(skip_value(p, text + len) - p) };
    if (!is_object(line))
        return bad(&c, "a line must be a JSON object");
    jv type;
    int rc = line_type(&c, line, &type);
    if (rc)
        return rc;
    if (!im->header) {
        if (!type_is(type, "agentrun"))
            return bad(&c, "the first line must be the header {\"type\":\"agentrun\",\"format\":1,...}");
        static const char *const names[] = { "type", "format", "exported_at", NULL };
        jv f[3];
        int64_t format = 0;
        if ((rc = fields(&c, line, "the header", names, f)))
            return rc;
        path_set(&c, "header", "format");
        if (!f[1].s)
            return bad(&c, "the header has no format");
        if ((rc = get_int(&c, f[1], &format)))
            return rc;
        if (format != 1)
            return bad(&c, "format %lld is not one this agentrun reads (1)", (long long)format);
        im->header = 1;
        return AR_OK;
    }
    if (type_is(type, "run")) {
        ar_record r;
        if ((rc = get_run(&c, line, &r)) == AR_OK)
            rc = import_run(im, &c, &r);
    } else if (type_is(type, "event")) {
        ar_event e;
        if ((rc = get_event(&c, line, &e)) == AR_OK)
            rc = import_event(im, &c, &e);
    } else if (type_is(type, "agentrun")) {
        rc = bad(&c, "a second header line");
    } else {
        rc = bad(&c, "unknown line type %.*s", (int)(type.n < 40 ? type.n : 40), type.s);
    }
    ar_arena_release(&c.arena);
    return rc;
}

/* A store error on a line names the line too. */
static int on_line(importer *im, int rc)
{
    if (rc && rc != AR_EJSON && rc != AR_ECALLBACK && strncmp(im->store->err.msg, "line ", 5) != 0) {
        char msg[AR_ERRMSG_MAX];
        snprintf(msg, sizeof msg, "%s", im->store->err.msg);
        ar_fail(&im->store->err, rc, "line %lld: %s", (long long)im->rep.lines, msg);
    }
    return rc;
}

int ar_store_import(ar_import_report *out, ar_store *store, ar_read_fn read, void *ud)
{
    importer im;
    memset(&im, 0, sizeof im);
    if (out)
        memset(out, 0, sizeof *out);
    int rc = ar_store_writable(store, "import");
    if (rc)
        return rc;
    if (!read)
        return ar_fail(&store->err, AR_EMISUSE, "read is required");
    im.store = store;
    for (;;) {
        const char *line = NULL;
        size_t len = 0;
        if (read(ud, &line, &len) != 0) {
            rc = ar_fail(&store->err, AR_ECALLBACK, "the read function asked to stop after line %lld",
                         (long long)im.rep.lines);
            break;
        }
        if (!line)
            break;
        if ((rc = on_line(&im, import_line(&im, line, len))))
            break;
    }
    if (rc == AR_OK && !im.header && im.rep.lines > 0)
        rc = ar_fail(&store->err, AR_EJSON, "line %lld: no header line", (long long)im.rep.lines);
    if (out)
        *out = im.rep;
    return rc;
}

/* ---- copy: the export piped into the import, a line at a time ------------- */

typedef struct copy_pipe {
    importer im;
    ar_store *src;
    char *line;
    size_t len, cap;
    int rc;                 /* the import's failure, which stopped the export */
} copy_pipe;

static int pipe_write(void *ud, const char *data, size_t len)
{
    copy_pipe *p = ud;
    const ar_allocator *a = &p->im.store->alloc;
    while (len) {
        const char *nl = memchr(data, '\n', len);
        size_t take = nl ? (size_t)(nl - data) + 1 : len;
        if (p->len + take > p->cap) {
            size_t cap = p->cap ? p->cap : 4096;
            while (cap < p->len + take)
                cap *= 2;
            char *grown = ar_mem_realloc(a, p->line, cap);
            if (!grown) {
                p->rc = ar_fail(&p->im.store->err, AR_ENOMEM, "out of memory copying a run");
                return 1;
            }
            p->line = grown;
            p->cap = cap;
        }
        memcpy(p->line + p->len, data, take);
        p->len += take;
        data += take;
        len -= take;
        if (nl) {
            if ((p->rc = on_line(&p->im, import_line(&p->im, p->line, p->len))))
                return 1;
            p->len = 0;
        }
    }
    return 0;
}

int ar_store_copy(ar_import_report *out, ar_store *dest, ar_store *src)
{
    if (out)
        memset(out, 0, sizeof *out);
    int rc = ar_store_writable(dest, "copy into");
    if (rc)
        return rc;
    if ((rc = ar_store_usable(src)))
        return ar_fail(&dest->err, rc, "the source store is not open");
    if (src == dest)
        return ar_fail(&dest->err, AR_EMISUSE, "a store cannot be copied into itself");
    copy_pipe p;
    memset(&p, 0, sizeof p);
    p.im.store = dest;
    p.src = src;
    rc = ar_store_export(NULL, src, NULL, pipe_write, &p);
    if (rc == AR_ECALLBACK && p.rc)
        rc = p.rc; /* the import's own failure, on dest */
    else if (rc)
        ar_fail(&dest->err, rc, "reading the source store: %s", src->err.msg);
    ar_mem_free(&dest->alloc, p.line);
    if (out)
        *out = p.im.rep;
    return rc;
}
