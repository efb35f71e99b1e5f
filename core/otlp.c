/* otlp.c -- runs as OpenTelemetry traces: one OTLP/JSON export request
 * (the body of POST /v1/traces) a run and a line, spans named and
 * attributed after the GenAI semantic conventions.
 *
 * OTLP/JSON: trace and span ids are lowercase hex (16 and 8 bytes), enums
 * are integers, 64-bit integers (times in unixNano, intValue) are decimal
 * strings, field names are lowerCamelCase. */
#include "internal.h"
#include "export.h"
#include "jsonw.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

enum { SPAN_KIND_INTERNAL = 1, SPAN_KIND_CLIENT = 3 };
enum { STATUS_OK = 1, STATUS_ERROR = 2 };

/* ---- ids: the same run gives the same ids at every export ----------------- */

static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t id_hash(const char *id)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        h = (h ^ *p) * 0x100000001b3ULL;
    return h;
}

static void hex64(char *out, uint64_t v)
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--, v >>= 4)
        out[i] = digits[v & 15];
}

/* 32 hex digits, never all zero. */
static void trace_id(char out[33], uint64_t h)
{
    uint64_t hi = mix64(h ^ 0x7472616365ULL), lo = mix64(hi ^ h);
    if (!hi && !lo)
        lo = 1;
    hex64(out, hi);
    hex64(out + 16, lo);
    out[32] = '\0';
}

/* 16 hex digits for the span of step `seq` (0: the run's root span), never zero. */
static void span_id(char out[17], uint64_t h, int64_t seq)
{
    uint64_t v = mix64(h + 0x9e3779b97f4a7c15ULL * (uint64_t)(seq + 1));
    hex64(out, v ? v : 1);
    out[16] = '\0';
}

/* ---- OTLP pieces ------------------------------------------------------------ */

static void put_nanos(ar_jsonw *w, const char *key, int64_t ms)
{
    char buf[40];
    if (ms < 0)
        ms = 0;
    snprintf(buf, sizeof buf, "%" PRId64 "000000", ms);
    ar_jsonw_key(w, 1, key);
    ar_jsonw_cstr(w, ms ? buf : "0");
}

/* Attributes are written as a list; *first tells whether a comma is due. */
static void attr_open(ar_jsonw *w, int *first, const char *key)
{
    ar_jsonw_lit(w, *first ? "{\"key\":" : ",{\"key\":");
    *first = 0;
    ar_jsonw_cstr(w, key);
    ar_jsonw_lit(w, ",\"value\":{");
}

static void attr_str(ar_jsonw *w, int *first, const char *key, const char *v, size_t n)
{
    attr_open(w, first, key);
    ar_jsonw_lit(w, "\"stringValue\":");
    ar_jsonw_str(w, v, n);
    ar_jsonw_lit(w, "}}");
}

static void attr_cstr(ar_jsonw *w, int *first, const char *key, const char *v)
{
    attr_str(w, first, key, v, strlen(v));
}

static void attr_int(ar_jsonw *w, int *first, const char *key, int64_t v)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%" PRId64, v);
    attr_open(w, first, key);
    ar_jsonw_lit(w, "\"intValue\":");
    ar_jsonw_cstr(w, buf);
    ar_jsonw_lit(w, "}}");
}

static void attr_double(ar_jsonw *w, int *first, const char *key, double v)
{
    attr_open(w, first, key);
    ar_jsonw_lit(w, "\"doubleValue\":");
    ar_jsonw_double(w, v);
    ar_jsonw_lit(w, "}}");
}

/* gen_ai.usage.* of a usage, and its other counters as agentrun.usage.*. */
static void attr_usage(ar_jsonw *w, int *first, const ar_usage *u)
{
    attr_int(w, first, "gen_ai.usage.input_tokens", u->input_tokens);
    attr_int(w, first, "gen_ai.usage.output_tokens", u->output_tokens);
    for (size_t i = 0; i < u->n_extra; i++) {
        if (strcmp(u->extra[i].name, "cache_read_tokens") == 0) {
            attr_int(w, first, "gen_ai.usage.cache_read.input_tokens", u->extra[i].value);
        } else {
            char key[96];
            snprintf(key, sizeof key, "agentrun.usage.%s", u->extra[i].name);
            attr_int(w, first, key, u->extra[i].value);
        }
    }
}

/* A span event carrying one text attribute ("content"). */
static void put_event(ar_jsonw *w, int *first, const char *name, int64_t at, const char *text, size_t n)
{
    ar_jsonw_lit(w, *first ? "{" : ",{");
    *first = 0;
    ar_jsonw_lit(w, "\"timeUnixNano\":");
    char buf[40];
    snprintf(buf, sizeof buf, "%" PRId64 "000000", at > 0 ? at : 0);
    ar_jsonw_cstr(w, at > 0 ? buf : "0");
    ar_jsonw_lit(w, ",\"name\":");
    ar_jsonw_cstr(w, name);
    ar_jsonw_lit(w, ",\"attributes\":[");
    int f = 1;
    attr_str(w, &f, "content", text, n);
    ar_jsonw_lit(w, "]}");
}

static void span_head(ar_jsonw *w, int comma, const char *trace, const char *span, const char *parent,
                      const char *name, size_t name_len, int kind, int64_t start, int64_t end)
{
    ar_jsonw_lit(w, comma ? ",{\"traceId\":\"" : "{\"traceId\":\"");
    ar_jsonw_lit(w, trace);
    ar_jsonw_lit(w, "\",\"spanId\":\"");
    ar_jsonw_lit(w, span);
    ar_jsonw_lit(w, "\"");
    if (parent) {
        ar_jsonw_lit(w, ",\"parentSpanId\":\"");
        ar_jsonw_lit(w, parent);
        ar_jsonw_lit(w, "\"");
    }
    ar_jsonw_lit(w, ",\"name\":");
    ar_jsonw_str(w, name, name_len);
    ar_jsonw_lit(w, ",\"kind\":");
    ar_jsonw_int(w, kind);
    put_nanos(w, "startTimeUnixNano", start);
    put_nanos(w, "endTimeUnixNano", end < start ? start : end);
    ar_jsonw_lit(w, ",\"attributes\":[");
}

static void put_status(ar_jsonw *w, int code, const char *message)
{
    ar_jsonw_lit(w, ",\"status\":{");
    if (message) {
        ar_jsonw_lit(w, "\"message\":");
        ar_jsonw_cstr(w, message);
        ar_jsonw_lit(w, ",");
    }
    ar_jsonw_lit(w, "\"code\":");
    ar_jsonw_int(w, code);
    ar_jsonw_lit(w, "}");
}

/* The run's root span "invoke_agent {agent}". */
static void put_root(ar_jsonw *w, const ar_record *r, const char *trace, const char *span, int content)
{
    char name[256];
    int n = snprintf(name, sizeof name, "invoke_agent %s", r->agent);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof name ? (size_t)n : sizeof name - 1;
    int64_t end = r->finished_at != AR_UNSET ? r->finished_at : r->updated_at;
    span_head(w, 0, trace, span, NULL, name, len, SPAN_KIND_INTERNAL, r->created_at, end);
    int first = 1;
    attr_cstr(w, &first, "gen_ai.operation.name", "invoke_agent");
    attr_cstr(w, &first, "gen_ai.agent.name", r->agent);
    attr_cstr(w, &first, "gen_ai.agent.id", r->id);
    attr_cstr(w, &first, "gen_ai.conversation.id", r->id);
    attr_usage(w, &first, &r->usage);
    attr_cstr(w, &first, "agentrun.run.status", ar_status_name(r->status));
    attr_int(w, &first, "agentrun.run.iterations", r->iterations);
    attr_double(w, &first, "agentrun.run.cost", r->usage.cost);
    if (r->edition)
        attr_cstr(w, &first, "agentrun.run.edition", r->edition);
    if (r->parent)
        attr_cstr(w, &first, "agentrun.run.parent", r->parent);
    if (r->limit.limit) {
        attr_cstr(w, &first, "agentrun.run.limit", r->limit.limit);
        attr_double(w, &first, "agentrun.run.limit_value", r->limit.limit_value);
    }
    if (r->status == AR_FAILED)
        attr_cstr(w, &first, "error.type", "agentrun.run_failed");
    ar_jsonw_lit(w, "]");
    if (content) {
        ar_jsonw_lit(w, ",\"events\":[");
        int f = 1;
        put_event(w, &f, "agentrun.goal", r->created_at, r->goal, strlen(r->goal));
        if (r->output)
            put_event(w, &f, "agentrun.output", end, r->output, strlen(r->output));
        if (r->error)
            put_event(w, &f, "agentrun.error", end, r->error, strlen(r->error));
        ar_jsonw_lit(w, "]");
    }
    if (r->status == AR_FAILED)
        put_status(w, STATUS_ERROR, r->error);
    else if (r->status == AR_COMPLETED)
        put_status(w, STATUS_OK, NULL);
    ar_jsonw_lit(w, "}");
}

/* A step's child span: "chat {name}", "execute_tool {name}" or "{kind}". */
static void put_step_span(ar_jsonw *w, const ar_step *s, const char *trace, uint64_t h, const char *root,
                          int content)
{
    char span[17], name[256];
    span_id(span, h, s->seq);
    int llm = strcmp(s->kind, "llm") == 0, tool = strcmp(s->kind, "tool") == 0;
    const char *op = llm ? "chat" : tool ? "execute_tool" : s->kind;
    int n = llm || tool ? snprintf(name, sizeof name, s->name ? "%s %s" : "%s", op, s->name)
                        : snprintf(name, sizeof name, "%s", s->kind);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof name ? (size_t)n : sizeof name - 1;
    span_head(w, 1, trace, span, root, name, len, llm ? SPAN_KIND_CLIENT : SPAN_KIND_INTERNAL,
              s->at - s->duration_ms, s->at);
    int first = 1;
    /* other kinds are no GenAI operation: they carry agentrun.step.kind alone */
    if (llm || tool)
        attr_cstr(w, &first, "gen_ai.operation.name", op);
    if (llm && s->name)
        attr_cstr(w, &first, "gen_ai.request.model", s->name);
    if (tool && s->name)
        attr_cstr(w, &first, "gen_ai.tool.name", s->name);
    /* a call made through an intent: its key names the call */
    char key[256];
    if (tool && s->content && s->content_len < sizeof key && ar_intent_key_of(s->content, s->content_len, key, sizeof key))
        attr_cstr(w, &first, "gen_ai.tool.call.id", key);
    if (llm || s->usage.input_tokens || s->usage.output_tokens || s->usage.n_extra)
        attr_usage(w, &first, &s->usage);
    attr_int(w, &first, "agentrun.step.seq", s->seq);
    attr_cstr(w, &first, "agentrun.step.kind", s->kind);
    if (s->usage.cost > 0)
        attr_double(w, &first, "agentrun.step.cost", s->usage.cost);
    int error = strcmp(s->kind, "error") == 0;
    if (error)
        attr_cstr(w, &first, "error.type", s->name ? s->name : "error");
    ar_jsonw_lit(w, "]");
    if (content && s->content) {
        ar_jsonw_lit(w, ",\"events\":[");
        int f = 1;
        put_event(w, &f, "agentrun.step.content", s->at, s->content, s->content_len);
        ar_jsonw_lit(w, "]");
    }
    if (error)
        put_status(w, STATUS_ERROR, NULL);
    ar_jsonw_lit(w, "}");
}

/* The OTLP walk: a request a run, its root span and a span a step, all
 * under the run's trace. */
typedef struct span_walk {
    int content;
    uint64_t h;
    char trace[33], root[17];
} span_walk;

static int span_run(ar_export_io *io, ar_jsonw *w, ar_record *r, void *ud)
{
    (void)io;
    span_walk *sw = ud;
    sw->h = id_hash(r->id);
    trace_id(sw->trace, sw->h);
    span_id(sw->root, sw->h, 0);
    ar_jsonw_lit(w, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[");
    int first = 1;
    attr_cstr(w, &first, "service.name", r->agent);
    ar_jsonw_lit(w, "]},\"scopeSpans\":[{\"scope\":{\"name\":\"agentrun\",\"version\":\"" AR_VERSION "\"},\"spans\":[");
    put_root(w, r, sw->trace, sw->root, sw->content);
    return w->rc;
}

static void span_step(ar_jsonw *w, const ar_step *s, int first, void *ud)
{
    (void)first;
    span_walk *sw = ud;
    put_step_span(w, s, sw->trace, sw->h, sw->root, sw->content);
}

static void span_end(ar_jsonw *w, void *ud)
{
    (void)ud;
    ar_jsonw_lit(w, "]}]}]}\n");
}

int ar_store_otlp(ar_export_report *out, ar_store *store, const ar_run_query *query, int flags, ar_write_fn write,
                  void *ud)
{
    ar_export_report rep = { 0, 0, 0 };
    if (out)
        *out = rep;
    int rc = ar_store_usable(store);
    if (rc)
        return rc;
    if (!write)
        return ar_fail(&store->err, AR_EMISUSE, "write is required");
    if (flags & ~AR_OTLP_CONTENT)
        return ar_fail(&store->err, AR_EMISUSE, "unknown flags %#x (AR_OTLP_CONTENT is the only one)", (unsigned)flags);
    ar_run_query q;
    int filters;
    if ((rc = ar_export_query_check(store, query, &q, &filters)))
        return rc;
    ar_jsonw w;
    ar_export_io io;
    ar_export_io_init(&io, &w, store, write, ud);
    span_walk sw = { flags & AR_OTLP_CONTENT, 0, "", "" };
    const ar_export_walker wk = { span_run, span_step, span_end, &sw };
    rc = ar_export_walk(&io, &w, &q, &wk, &rep.runs);
    if (rc == AR_OK)
        rc = ar_jsonw_flush(&w);
    ar_export_io_end(&io);
    rep.bytes = (int64_t)w.bytes;
    ar_jsonw_release(&w);
    if (out)
        *out = rep;
    return rc;
}
