/* test_export.c -- JSON Lines export and import, copies between stores and
 * backends, the OTLP export's determinism, and the export's bounded memory. */
#include "suite.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "agentrun.h"

/* ---- output into memory ---------------------------------------------------- */

typedef struct sink {
    char *data;
    size_t len, cap;
    size_t stop_after;  /* > 0: ask to stop once this many bytes came */
} sink;

static int sink_write(void *ud, const char *data, size_t len)
{
    sink *s = ud;
    if (s->len + len + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->len + len + 1)
            cap *= 2;
        s->data = realloc(s->data, cap);
        assert_non_null(s->data);
        s->cap = cap;
    }
    memcpy(s->data + s->len, data, len);
    s->len += len;
    s->data[s->len] = '\0';
    return s->stop_after && s->len >= s->stop_after;
}

/* The export of a store (fails the test unless AR_OK); free() it. */
static char *export_all(ar_store *store, ar_export_report *rep)
{
    sink s = { NULL, 0, 0, 0 };
    int rc = ar_store_export(rep, store, NULL, sink_write, &s);
    if (rc) {
        print_error("export: %s: %s\n", ar_code_name(rc), ar_store_errmsg(store));
        fail();
    }
    assert_non_null(s.data);
    return s.data;
}

/* The text after the header line (the part that must not change). */
static const char *body(const char *text)
{
    const char *nl = strchr(text, '\n');
    assert_non_null(nl);
    assert_memory_equal(text, "{\"type\":\"agentrun\",\"format\":1,\"exported_at\":", 44);
    return nl + 1;
}

/* Lines of a text, read one by one by ar_store_import. */
typedef struct lines {
    const char *p;
} lines;

static int lines_read(void *ud, const char **line, size_t *len)
{
    lines *l = ud;
    if (!*l->p) {
        *line = NULL;
        return 0;
    }
    const char *nl = strchr(l->p, '\n');
    *line = l->p;
    *len = nl ? (size_t)(nl - l->p) + 1 : strlen(l->p);
    l->p += *len;
    return 0;
}

static int import_text(ar_import_report *rep, ar_store *store, const char *text)
{
    lines l = { text };
    return ar_store_import(rep, store, lines_read, &l);
}

static void import_ok(ar_import_report *rep, ar_store *store, const char *text)
{
    int rc = import_text(rep, store, text);
    if (rc) {
        print_error("import: %s: %s\n", ar_code_name(rc), ar_store_errmsg(store));
        fail();
    }
}

/* ---- a store using every feature ------------------------------------------ */

static void step_ok(ar_run *run, const ar_step *s)
{
    int rc = ar_run_step(NULL, run, s);
    if (rc) {
        print_error("step: %s: %s\n", ar_code_name(rc), ar_run_errmsg(run));
        fail();
    }
}

/* Fills a store: completed (output, metadata, counters, checkpoint, JSON
 * with line breaks between tokens), forks with intents that waited and were
 * answered or still wait, failed, budget_exhausted, interrupted,
 * running (left open: *open_run, closed by the caller), and events with NUL
 * bytes and unicode. */
static void fill(ar_store *store, ar_run **open_run)
{
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "researcher";
    spec.goal = "find \xc3\xa9t\xc3\xa9 \xf0\x9f\x8c\x9e \"quoted\"\n\ttabbed";
    spec.user = "alice";
    spec.edition = "v2";
    spec.metadata = "{\"tags\": [\"x\", \"y\"],\n \"n\": 1.5e3}";
    spec.budget.max_steps = 10;
    spec.budget.max_cost = 0.1;
    spec.budget.max_seconds = 12.5;
    ar_run *run;
    assert_int_equal(ar_run_begin(&run, store, &spec), AR_OK);
    ar_counter counters[] = { { "cache_read_tokens", 7 }, { "reasoning_tokens", 3 } };
    ar_step s = AR_STEP_INIT;
    s.kind = "llm";
    s.name = "model-x";
    s.content = "{\"role\":\"assistant\",\n\"text\":\"nul \\u0000 \\ud83c\\udf1e\"}";
    s.usage.input_tokens = 120;
    s.usage.output_tokens = 30;
    s.usage.n_extra = 2;
    s.usage.extra = counters;
    s.usage.cost = 0.0000004;
    s.duration_ms = 850;
    step_ok(run, &s);
    assert_int_equal(ar_run_checkpoint(run, "{\"at\": [1, 2]}", AR_NUL_TERMINATED), AR_OK);
    ar_step t = AR_STEP_INIT;
    t.kind = "tool";
    t.name = "search";
    t.content = "[1, 2.5, true, null, {}]";
    t.usage.cost = 0.1;
    t.duration_ms = 40;
    step_ok(run, &t);
    ar_step o = AR_STEP_INIT;
    o.kind = "observation";
    step_ok(run, &o);
    assert_int_equal(ar_run_complete(NULL, run, "{\"answer\": 42}", AR_NUL_TERMINATED), AR_OK);
    char first[64];
    snprintf(first, sizeof first, "%s", ar_run_id(run));
    ar_run_close(run);

    /* a fork of it after step 1 that calls a tool (an intent, settled, and
     * one left pending) and waits for a person, who answers; and a fork of
     * that fork still waiting */
    ar_fork_opts fo = AR_FORK_OPTS_INIT;
    fo.at = 1;
    assert_int_equal(ar_run_fork(&run, store, first, &fo), AR_OK);
    assert_int_equal(ar_run_intend(NULL, run, "refund-1", "refund", "{\"amount\": 5}", AR_NUL_TERMINATED), AR_OK);
    assert_int_equal(ar_run_settle(NULL, run, "refund-1", "{\"ok\": true}", AR_NUL_TERMINATED, 0), AR_OK);
    assert_int_equal(ar_run_intend(NULL, run, "mail-1", "mail", "[]", AR_NUL_TERMINATED), AR_OK);
    char forked[64];
    snprintf(forked, sizeof forked, "%s", ar_run_id(run));
    assert_int_equal(ar_run_wait(NULL, run, "{\"question\": \"refund?\"}", AR_NUL_TERMINATED), AR_OK);
    ar_run_close(run);
    assert_int_equal(ar_store_respond(NULL, store, forked, "\"yes\"", AR_NUL_TERMINATED), AR_OK);
    fo.at = 2;
    assert_int_equal(ar_run_fork(&run, store, forked, &fo), AR_OK);
    assert_int_equal(ar_run_wait(NULL, run, "[\"again\"]", AR_NUL_TERMINATED), AR_OK);
    ar_run_close(run);

    run = test_begin(store, "researcher");
    step_ok(run, &o);
    assert_int_equal(ar_run_fail(NULL, run, "boom: \xe2\x9c\x97"), AR_OK);
    ar_run_close(run);

    ar_run_spec b = AR_RUN_SPEC_INIT;
    b.agent = "writer";
    b.goal = "g";
    b.parent = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    b.budget.max_tokens = 100;
    assert_int_equal(ar_run_begin(&run, store, &b), AR_OK);
    s.usage.input_tokens = 90;
    s.usage.output_tokens = 20;
    step_ok(run, &s);
    ar_exhaustion why;
    assert_int_equal(ar_run_check(&why, run), AR_EBUDGET);
    assert_int_equal(ar_run_exhaust(NULL, run, &why), AR_OK);
    ar_run_close(run);

    /* interrupted: marked by recovery, its handle left behind */
    run = test_begin(store, "writer");
    step_ok(run, &t);
    int64_t n;
    assert_int_equal(ar_store_recover(&n, store, 0), AR_OK);
    assert_int_equal(n, 1);
    ar_run_close(run);

    *open_run = test_begin(store, "writer");
    step_ok(*open_run, &o);
    assert_int_equal(ar_run_checkpoint(*open_run, "\"half\"", AR_NUL_TERMINATED), AR_OK);

    ar_event e = AR_EVENT_INIT;
    e.agent = "researcher";
    e.type = "output";
    e.content = "a\0b \xc3\xa9";
    e.content_len = 6;
    e.metadata = "{\"k\":\n[1]}";
    e.session = 3;
    assert_int_equal(ar_event_append(NULL, store, &e), AR_OK);
    ar_event f = AR_EVENT_INIT;
    f.agent = "nobody-runs";
    f.type = "log";
    assert_int_equal(ar_event_append(NULL, store, &f), AR_OK);
    ar_event g = AR_EVENT_INIT;
    g.agent = "writer";
    g.type = "prompt_sent";
    g.content = "";
    g.content_len = 0;
    g.run = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    assert_int_equal(ar_event_append(NULL, store, &g), AR_OK);
}

static void test_export_import_export_gives_the_same_bytes(void **state)
{
    (void)state;
    ar_store *a = test_store_new();
    ar_run *open_run;
    fill(a, &open_run);
    ar_export_report rep;
    char *first = export_all(a, &rep);
    assert_int_equal(rep.runs, 7);
    assert_int_equal(rep.events, 3);
    assert_int_equal(rep.bytes, (int64_t)strlen(first));
    /* one value a line: line breaks inside stored JSON became spaces */
    size_t newlines = 0;
    for (const char *p = first; *p; p++)
        newlines += *p == '\n';
    assert_int_equal(newlines, 1 + 7 + 3);
    assert_non_null(strstr(first, "\"content\":\"a\\u0000b \xc3\xa9\""));
    /* a fork names its origin; a run that waited carries its request and answer */
    assert_non_null(strstr(first, ",\"forked_from\":{\"run\":\""));
    assert_non_null(strstr(first, "\"status\":\"waiting\""));
    assert_non_null(strstr(first, ",\"request\":{\"question\": \"refund?\"},\"response\":\"yes\""));
    assert_non_null(strstr(first, "\"status\":\"running\""));
    assert_non_null(strstr(first, "\"status\":\"interrupted\""));
    assert_non_null(strstr(first, "\"limit\":{\"name\":\"max_tokens\",\"value\":100.0,\"reached\":110.0}"));
    assert_non_null(strstr(first, "\"cache_read_tokens\":7"));
    assert_non_null(strstr(first, "\"cost\":0.1000004"));

    ar_store *b = test_store_new();
    ar_import_report ir;
    import_ok(&ir, b, first);
    assert_int_equal(ir.runs, 7);
    assert_int_equal(ir.events, 3);
    assert_int_equal(ir.skipped, 0);
    assert_int_equal(ir.lines, 11);
    char *second = export_all(b, NULL);
    assert_string_equal(body(first), body(second));

    /* the running run stays running, resumable after a recovery like any */
    ar_run_close(open_run);
    free(first);
    free(second);
    ar_store_close(a);
    ar_store_close(b);
}

static void test_importing_twice_skips_what_is_there(void **state)
{
    (void)state;
    ar_store *a = test_store_new();
    ar_run *open_run;
    fill(a, &open_run);
    ar_run_close(open_run);
    char *text = export_all(a, NULL);
    ar_store *b = test_store_new();
    ar_import_report ir;
    import_ok(&ir, b, text);
    import_ok(&ir, b, text);
    assert_int_equal(ir.runs, 0);
    assert_int_equal(ir.events, 0);
    assert_int_equal(ir.skipped, 10);
    ar_store_info info;
    assert_int_equal(ar_store_info_get(&info, b), AR_OK);
    assert_int_equal(info.runs, 7);
    assert_int_equal(info.events, 3);
    /* an event whose id another event holds is appended with a new id */
    ar_store *c = test_store_new();
    ar_event e = AR_EVENT_INIT;
    e.agent = "researcher";
    e.type = "other";
    assert_int_equal(ar_event_append(NULL, c, &e), AR_OK);
    import_ok(&ir, c, text);
    assert_int_equal(ir.events, 3);
    assert_int_equal(ar_store_info_get(&info, c), AR_OK);
    assert_int_equal(info.events, 4);
    /* and a new event still gets an id above every imported one */
    int64_t id;
    assert_int_equal(ar_event_append(&id, b, &e), AR_OK);
    assert_int_equal(id, 4);
    free(text);
    ar_store_close(a);
    ar_store_close(b);
    ar_store_close(c);
}

/* An export imported back into the store it came from adds nothing: the
 * events it holds are found the same, also those stored without metadata
 * (exported as {}) or with line breaks in their metadata (exported as
 * spaces), which once came back as new copies at every import. */
static void test_an_export_imported_into_its_own_store_adds_nothing(void **state)
{
    (void)state;
    ar_store *a = test_store_new();
    ar_run *open_run;
    fill(a, &open_run);
    ar_run_close(open_run);
    const char *metadata[] = { NULL, "{}", "{\n  \"k\": 1\n}", "{\"a\":[1,\r\n2]}" };
    for (int i = 0; i < 4; i++) {
        ar_event e = AR_EVENT_INIT;
        e.agent = "backup";
        e.type = "log";
        e.metadata = metadata[i];
        e.content = i % 2 ? "" : "text";
        assert_int_equal(ar_event_append(NULL, a, &e), AR_OK);
    }
    ar_store_info before, after;
    assert_int_equal(ar_store_info_get(&before, a), AR_OK);
    char *text = export_all(a, NULL);
    for (int round = 0; round < 2; round++) {
        ar_import_report ir;
        import_ok(&ir, a, text);
        assert_int_equal(ir.runs, 0);
        assert_int_equal(ir.events, 0);
        assert_int_equal(ir.skipped, before.runs + before.events);
    }
    assert_int_equal(ar_store_info_get(&after, a), AR_OK);
    assert_int_equal(after.events, before.events);
    assert_int_equal(after.runs, before.runs);
    /* and the export is the same bytes */
    char *again = export_all(a, NULL);
    assert_string_equal(body(text), body(again));
    free(again);
    free(text);
    ar_store_close(a);
}

/* Replaces each @ID@ and @AT@ in tmpl by id and at (malloc'ed). */
static char *fill_in(const char *tmpl, const char *id, long long at)
{
    char atext[24];
    snprintf(atext, sizeof atext, "%lld", at);
    size_t n = strlen(tmpl) * 2 + 64;
    char *out = malloc(n), *o = out;
    assert_non_null(out);
    for (const char *p = tmpl; *p;) {
        if (strncmp(p, "@ID@", 4) == 0) {
            o += sprintf(o, "%s", id);
            p += 4;
        } else if (strncmp(p, "@AT@", 4) == 0) {
            o += sprintf(o, "%s", atext);
            p += 4;
        } else {
            *o++ = *p++;
        }
    }
    *o = '\0';
    return out;
}

#define RUN_HEAD "{\"type\":\"run\",\"id\":\"@ID@\",\"agent\":\"a\",\"goal\":\"g\",\"status\":\"failed\"," \
    "\"created_at\":@AT@"

static void test_a_bad_line_names_its_number_and_stores_nothing_of_it(void **state)
{
    (void)state;
    const char *bad_lines[] = {
        "{\"type\":\"run\",\"id\":\"@ID@\",\"agent\":\"a\"\n",                       /* not JSON */
        "{\"type\":\"run\",\"id\":\"@ID@\",\"goal\":\"g\",\"status\":\"failed\",\"created_at\":@AT@}\n", /* no agent */
        RUN_HEAD ",\"iterations\":\"2\"}\n",                                        /* a wrong type */
        RUN_HEAD ",\"iterations\":2,\"steps\":[{\"kind\":\"x\"}]}\n",                 /* disagrees */
        RUN_HEAD ",\"steps\":[{\"kind\":\"x\",\"content\":1}],\"colour\":1}\n",       /* unknown field */
        RUN_HEAD ",\"steps\":[{\"kind\":\"x\"},{\"kind\":\"y\",\"usage\":{\"input_tokens\":-1}}]}\n",
        RUN_HEAD ",\"steps\":[{\"kind\":\"x\",\"content\":{\"a\":1}}],\"checkpoint\":{\"state\":1,\"seq\":5}}\n",
        RUN_HEAD ",\"metadata\":[1]}\n",
        "{\"type\":\"event\",\"id\":5,\"agent\":\"a\",\"event_type\":\"t\",\"at\":1,\"metadata\":[1]}\n",
        "{\"type\":\"event\",\"id\":5,\"agent\":\"a\",\"at\":1}\n",                       /* no event_type */
        "{\"type\":\"event\",\"id\":5,\"agent\":\"a\",\"event_type\":\"t\",\"at\":1,\"content\":\"\\ud800\"}\n",
        "{\"type\":\"thing\"}\n",
        "[1]\n",
    };
    /* a good export of one run, and the id of a run it does not hold */
    ar_store *src = test_store_new();
    ar_run *run = test_begin(src, "a");
    ar_step st = AR_STEP_INIT;
    st.kind = "llm";
    st.content = "{\"x\": 1}";
    step_ok(run, &st);
    assert_int_equal(ar_run_complete(NULL, run, "1", 1), AR_OK);
    ar_run_close(run);
    char *good = export_all(src, NULL);
    run = test_begin(src, "b");
    char other[27];
    snprintf(other, sizeof other, "%s", ar_run_id(run));
    long long at = (long long)ar_run_created_at(run);
    ar_run_close(run);
    ar_store_close(src);
    for (size_t i = 0; i < sizeof bad_lines / sizeof bad_lines[0]; i++) {
        ar_store *store = test_store_new();
        char *line = fill_in(bad_lines[i], other, at);
        size_t n = strlen(good) + strlen(line) + strlen(good) + 1;
        char *text = malloc(n);
        assert_non_null(text);
        snprintf(text, n, "%s%s%s", good, line, good);
        ar_import_report ir;
        int rc = import_text(&ir, store, text);
        if (rc != AR_EJSON || strncmp(ar_store_errmsg(store), "line 3: ", 8) != 0) {
            print_error("case %zu: %s: %s\n", i, ar_code_name(rc), ar_store_errmsg(store));
            fail();
        }
        assert_int_equal(ir.runs, 1);
        assert_int_equal(ir.lines, 3);
        ar_store_info info;
        assert_int_equal(ar_store_info_get(&info, store), AR_OK);
        assert_int_equal(info.runs, 1);
        assert_int_equal(info.steps, 1);
        assert_int_equal(info.events, 0);
        free(line);
        free(text);
        ar_store_close(store);
    }
    /* no header, another format */
    ar_store *store = test_store_new();
    ar_import_report ir;
    assert_int_equal(import_text(&ir, store, body(good)), AR_EJSON);
    assert_non_null(strstr(ar_store_errmsg(store), "line 1: the first line must be the header"));
    assert_int_equal(import_text(&ir, store, "{\"type\":\"agentrun\",\"format\":2}\n"), AR_EJSON);
    assert_non_null(strstr(ar_store_errmsg(store), "format 2"));
    free(good);
    ar_store_close(store);
}

/* SQLite -> this pass's backend -> SQLite: on the PostgreSQL pass the copy
 * crosses backends both ways. */
static void test_copy_between_stores_and_backends_keeps_every_byte(void **state)
{
    (void)state;
    char *dir = tmpdir_make();
    char *pa = tmpdir_path(dir, "a.db"), *pc = tmpdir_path(dir, "c.db");
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    opts.durability = AR_DURABILITY_NORMAL;
    ar_store *a = NULL, *c = NULL;
    assert_int_equal(ar_store_open(&a, pa, &opts), AR_OK);
    assert_int_equal(ar_store_open(&c, pc, &opts), AR_OK);
    ar_run *open_run;
    fill(a, &open_run);
    ar_store *b = test_store_new();
    ar_import_report ir;
    assert_int_equal(ar_store_copy(&ir, b, a), AR_OK);
    assert_int_equal(ir.runs, 7);
    assert_int_equal(ir.events, 3);
    assert_int_equal(ar_store_copy(&ir, c, b), AR_OK);
    assert_int_equal(ir.runs, 7);
    char *ea = export_all(a, NULL), *eb = export_all(b, NULL), *ec = export_all(c, NULL);
    assert_string_equal(body(ea), body(eb));
    assert_string_equal(body(ea), body(ec));
    /* copying again skips everything */
    assert_int_equal(ar_store_copy(&ir, c, b), AR_OK);
    assert_int_equal(ir.runs, 0);
    assert_int_equal(ir.skipped, 10);
    assert_int_equal(ar_store_copy(&ir, a, a), AR_EMISUSE);
    ar_run_close(open_run);
    free(ea);
    free(eb);
    free(ec);
    ar_store_close(a);
    ar_store_close(b);
    ar_store_close(c);
    free(pa);
    free(pc);
    tmpdir_remove(dir);
}

static void test_export_selects_runs_and_their_agents_events(void **state)
{
    (void)state;
    ar_store *a = test_store_new();
    ar_run *open_run;
    fill(a, &open_run);
    ar_run_close(open_run);
    ar_run_query q = AR_RUN_QUERY_INIT;
    q.agent = "writer";
    q.limit = 1; /* not used: an export takes every matching run */
    sink s = { NULL, 0, 0, 0 };
    ar_export_report rep;
    assert_int_equal(ar_store_export(&rep, a, &q, sink_write, &s), AR_OK);
    assert_int_equal(rep.runs, 3);
    assert_int_equal(rep.events, 1);
    assert_null(strstr(s.data, "\"agent\":\"researcher\""));
    assert_non_null(strstr(s.data, "\"event_type\":\"prompt_sent\""));
    free(s.data);
    /* a write function that asks to stop stops the export */
    sink t = { NULL, 0, 0, 100 };
    assert_int_equal(ar_store_export(&rep, a, NULL, sink_write, &t), AR_ECALLBACK);
    assert_true(t.len >= 100);
    free(t.data);
    assert_int_equal(ar_store_export(NULL, a, NULL, NULL, NULL), AR_EMISUSE);
    q.version = 0;
    assert_int_equal(ar_store_export(NULL, a, &q, sink_write, &t), AR_EMISUSE);
    ar_store_close(a);
}

static void test_otlp_is_the_same_at_every_export(void **state)
{
    (void)state;
    ar_store *a = test_store_new();
    ar_run *open_run;
    fill(a, &open_run);
    ar_run_close(open_run);
    sink s1 = { NULL, 0, 0, 0 }, s2 = { NULL, 0, 0, 0 };
    ar_export_report rep;
    assert_int_equal(ar_store_otlp(&rep, a, NULL, AR_OTLP_CONTENT, sink_write, &s1), AR_OK);
    assert_int_equal(rep.runs, 7);
    assert_int_equal(ar_store_otlp(NULL, a, NULL, AR_OTLP_CONTENT, sink_write, &s2), AR_OK);
    assert_string_equal(s1.data, s2.data);
    /* a copy of the store gives the same traces: ids come from the runs (the
     * copy of a copy, since a first copy turns line breaks between JSON
     * tokens into spaces) */
    ar_store *b = test_store_new(), *c = test_store_new();
    assert_int_equal(ar_store_copy(NULL, b, a), AR_OK);
    assert_int_equal(ar_store_copy(NULL, c, b), AR_OK);
    sink s3 = { NULL, 0, 0, 0 }, s4 = { NULL, 0, 0, 0 };
    assert_int_equal(ar_store_otlp(NULL, b, NULL, AR_OTLP_CONTENT, sink_write, &s3), AR_OK);
    assert_int_equal(ar_store_otlp(NULL, c, NULL, AR_OTLP_CONTENT, sink_write, &s4), AR_OK);
    assert_string_equal(s3.data, s4.data);
    /* without content, the first copy's traces are the original's */
    free(s1.data);
    free(s3.data);
    memset(&s1, 0, sizeof s1);
    memset(&s3, 0, sizeof s3);
    assert_int_equal(ar_store_otlp(NULL, a, NULL, 0, sink_write, &s1), AR_OK);
    assert_int_equal(ar_store_otlp(NULL, b, NULL, 0, sink_write, &s3), AR_OK);
    assert_string_equal(s1.data, s3.data);
    assert_null(strstr(s1.data, "agentrun.step.content"));
    assert_int_equal(ar_store_otlp(NULL, a, NULL, 4, sink_write, &s3), AR_EMISUSE);
    free(s1.data);
    free(s2.data);
    free(s3.data);
    free(s4.data);
    ar_store_close(a);
    ar_store_close(b);
    ar_store_close(c);
}

/* ---- bounded memory --------------------------------------------------------- */

/* An allocator that counts the bytes the store holds and their peak. */
typedef struct counting {
    size_t now, peak;
} counting;

typedef struct hdr {
    size_t size;
    size_t pad;
} hdr;

static void *count_malloc(void *ud, size_t size)
{
    counting *c = ud;
    hdr *h = malloc(sizeof *h + size);
    if (!h)
        return NULL;
    h->size = size;
    c->now += size;
    if (c->now > c->peak)
        c->peak = c->now;
    return h + 1;
}

static void count_free(void *ud, void *p)
{
    counting *c = ud;
    if (!p)
        return;
    hdr *h = (hdr *)p - 1;
    c->now -= h->size;
    free(h);
}

static void *count_realloc(void *ud, void *p, size_t size)
{
    if (!p)
        return count_malloc(ud, size);
    counting *c = ud;
    hdr *h = (hdr *)p - 1;
    size_t old = h->size;
    hdr *g = realloc(h, sizeof *g + size);
    if (!g)
        return NULL;
    g->size = size;
    c->now = c->now - old + size;
    if (c->now > c->peak)
        c->peak = c->now;
    return g + 1;
}

static int count_bytes(void *ud, const char *data, size_t len)
{
    (void)data;
    *(size_t *)ud += len;
    return 0;
}

/* Adds `runs` runs of 10 steps with ~200 bytes of content each. */
static void add_runs(ar_store *store, int runs)
{
    ar_step steps[10];
    for (int i = 0; i < 10; i++) {
        ar_step s = AR_STEP_INIT;
        s.kind = "llm";
        s.name = "m";
        s.content = "{\"text\":\"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
                    "incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud.\"}";
        s.usage.input_tokens = 10;
        s.usage.output_tokens = 5;
        steps[i] = s;
    }
    for (int r = 0; r < runs; r++) {
        ar_record rec = AR_RECORD_INIT;
        rec.agent = r % 2 ? "odd" : "even";
        rec.goal = "a goal";
        rec.status = AR_COMPLETED;
        rec.output = "\"ok\"";
        rec.steps = steps;
        rec.n_steps = 10;
        char *id;
        assert_int_equal(ar_store_write(&id, store, &rec), AR_OK);
        ar_free(id);
    }
}

static size_t export_peak(ar_store *store, counting *c, size_t *bytes)
{
    size_t base = c->now;
    c->peak = c->now;
    *bytes = 0;
    assert_int_equal(ar_store_export(NULL, store, NULL, count_bytes, bytes), AR_OK);
    assert_int_equal(c->now, base);
    return c->peak - base;
}

static void test_export_memory_does_not_grow_with_the_store(void **state)
{
    (void)state;
    counting c = { 0, 0 };
    ar_allocator alloc = { count_malloc, count_realloc, count_free, &c };
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    opts.durability = AR_DURABILITY_NORMAL;
    opts.allocator = &alloc;
    ar_store *store = test_store_open(&opts);
    add_runs(store, 200);
    size_t bytes_small, bytes_large;
    size_t small = export_peak(store, &c, &bytes_small);
    add_runs(store, 1000);
    size_t large = export_peak(store, &c, &bytes_large);
    /* the export of 1,200 runs is over 3 MB, while what the export holds
     * stays one page of runs, one batch of steps and one output chunk */
    assert_true(bytes_large > 5 * bytes_small);
    if (large > 1024 * 1024 || large > small + 64 * 1024) {
        print_error("export peak: %zu bytes for 200 runs, %zu bytes for 1200 runs\n", small, large);
        fail();
    }
    ar_store_close(store);
}

/* ---- the write function using the store -------------------------------- */

/* A write function that, at every fourth call, records through the store
 * being exported a step of a run begun before (one statement: inside a held
 * read transaction it would stay uncommitted) and a whole run (its begin
 * opens a write transaction, which fails inside one), and checks that a
 * second handle sees both at once. */
typedef struct reentrant {
    ar_store *store;
    const char *location;
    const ar_open_opts *opts;
    ar_run *open_run;   /* begun before the export: a step is one statement */
    int calls, runs;
    char failure[256];
} reentrant;

static int write_then_record(void *ud, const char *data, size_t len)
{
    reentrant *r = ud;
    (void)data;
    (void)len;
    if (r->calls++ % 4 != 0)
        return 0;
    ar_run *run = NULL;
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "during";
    spec.goal = "recorded while exporting";
    ar_step s = AR_STEP_INIT;
    s.kind = "llm";
    s.content = "\"written mid-export\"";
    int64_t seq = 0;
    int rc = ar_run_step(&seq, r->open_run, &s);
    if (rc) {
        snprintf(r->failure, sizeof r->failure, "a step inside the write function: %s: %s", ar_code_name(rc),
                 ar_run_errmsg(r->open_run));
        return 1;
    }
    rc = ar_run_begin(&run, r->store, &spec);
    if (rc == AR_OK && (rc = ar_run_step(NULL, run, &s)) == AR_OK)
        rc = ar_run_complete(NULL, run, "\"ok\"", AR_NUL_TERMINATED);
    char id[40] = "";
    if (run)
        snprintf(id, sizeof id, "%s", ar_run_id(run));
    if (rc) {
        snprintf(r->failure, sizeof r->failure, "recording inside the write function: %s: %s", ar_code_name(rc),
                 run ? ar_run_errmsg(run) : ar_store_errmsg(r->store));
        ar_run_close(run);
        return 1;
    }
    ar_run_close(run);
    ar_store *other = NULL;
    ar_record *rec = NULL;
    if ((rc = ar_store_open(&other, r->location, r->opts)) == AR_OK)
        rc = ar_store_get(&rec, other, id, 1);
    if (rc || !rec || rec->status != AR_COMPLETED || rec->n_steps != 1) {
        snprintf(r->failure, sizeof r->failure, "a second handle does not see run %s: %s", id, ar_code_name(rc));
        rc = 1;
    }
    ar_record_free(rec);
    rec = NULL;
    if (rc == AR_OK && ((rc = ar_store_get(&rec, other, ar_run_id(r->open_run), 0)) || !rec ||
                        rec->iterations != seq)) {
        snprintf(r->failure, sizeof r->failure, "a second handle does not see step %lld: %s", (long long)seq,
                 ar_code_name(rc));
        rc = 1;
    }
    ar_record_free(rec);
    ar_store_close(other);
    r->runs++;
    return rc ? 1 : 0;
}

static void test_the_write_function_may_record_through_the_store_it_exports(void **state)
{
    (void)state;
    ar_open_opts opts = AR_OPEN_OPTS_INIT;
    opts.durability = AR_DURABILITY_NORMAL;
    char *location = test_location(&opts);
    ar_store *store = NULL;
    assert_int_equal(ar_store_open(&store, location, &opts), AR_OK);
    /* enough runs for the output to go out in many chunks */
    add_runs(store, 400);
    ar_run *open_run = NULL;
    ar_run_spec spec = AR_RUN_SPEC_INIT;
    spec.agent = "open";
    spec.goal = "steps recorded while exporting";
    assert_int_equal(ar_run_begin(&open_run, store, &spec), AR_OK);
    for (int otlp = 0; otlp < 2; otlp++) {
        reentrant r = { store, location, &opts, open_run, 0, 0, "" };
        ar_export_report rep;
        int rc = otlp ? ar_store_otlp(&rep, store, NULL, AR_OTLP_CONTENT, write_then_record, &r)
                      : ar_store_export(&rep, store, NULL, write_then_record, &r);
        if (rc || r.failure[0]) {
            print_error("%s: %s (%s)\n", otlp ? "otlp" : "export", r.failure, ar_store_errmsg(store));
            fail();
        }
        assert_true(r.runs >= 2);
        assert_true(rep.runs >= 400);
    }
    ar_run_close(open_run);
    ar_store_close(store);
    free(location);
}

/* ---- a long run, and an export from inside a retention rule -------------- */

/* A run of 600 steps spans three step batches: its export line parses, with
 * every step once in order, and its OTLP request holds a span a step. */
static void test_a_run_longer_than_a_batch_exports_whole(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    ar_run *run = test_begin(store, "long");
    for (int i = 1; i <= 600; i++) {
        char content[48];
        snprintf(content, sizeof content, "{\"n\":%d}", i);
        ar_step s = AR_STEP_INIT;
        s.kind = i % 2 ? "llm" : "tool";
        s.name = "m";
        s.content = content;
        assert_int_equal(ar_run_step(NULL, run, &s), AR_OK);
    }
    assert_int_equal(ar_run_complete(NULL, run, "\"done\"", AR_NUL_TERMINATED), AR_OK);
    ar_run_close(run);
    for (int otlp = 0; otlp < 2; otlp++) {
        sink out = { NULL, 0, 0, 0 };
        int rc = otlp ? ar_store_otlp(NULL, store, NULL, 0, sink_write, &out)
                      : ar_store_export(NULL, store, NULL, sink_write, &out);
        assert_int_equal(rc, AR_OK);
        /* JSON Lines: the header, then the run; OTLP: the run's request */
        const char *line = otlp ? out.data : strchr(out.data, '\n') + 1;
        cJSON *doc = cJSON_ParseWithOpts(line, NULL, 0);
        assert_non_null(doc);
        if (otlp) {
            cJSON *spans = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetArrayItem(
                cJSON_GetObjectItem(doc, "resourceSpans"), 0), "scopeSpans"), 0), "spans");
            assert_int_equal(cJSON_GetArraySize(spans), 601);
        } else {
            cJSON *steps = cJSON_GetObjectItem(doc, "steps");
            assert_int_equal(cJSON_GetArraySize(steps), 600);
            int seq = 0;
            cJSON *step;
            cJSON_ArrayForEach(step, steps) {
                assert_int_equal(cJSON_GetObjectItem(step, "seq")->valuedouble, ++seq);
                assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(step, "content"), "n")->valuedouble, seq);
            }
        }
        cJSON_Delete(doc);
        free(out.data);
    }
    ar_store_close(store);
}

typedef struct rule_export {
    ar_store *store;
    int exports;
    int64_t runs_seen;
    int rc;
} rule_export;

static int export_in_rule(void *ud, const ar_record *run, double age, int *verdict)
{
    (void)run;
    (void)age;
    rule_export *e = ud;
    *verdict = AR_RULE_KEEP;
    if (e->exports++ < 2) {
        size_t bytes = 0;
        ar_export_report rep;
        e->rc = ar_store_export(&rep, e->store, NULL, count_bytes, &bytes);
        e->runs_seen = rep.runs;
        if (e->rc)
            return 1;
    }
    return 0;
}

/* A retention rule may read its store: an export from inside one (where
 * the scan's own reads are under way) works, and the scan goes on. */
static void test_an_export_from_inside_a_retention_rule_reads_and_the_scan_goes_on(void **state)
{
    (void)state;
    ar_store *store = test_store_new();
    add_runs(store, 30);
    rule_export e = { store, 0, 0, AR_OK };
    ar_retention p = AR_RETENTION_INIT;
    p.rule = export_in_rule;
    p.rule_ud = &e;
    ar_retention_report rep;
    int rc = ar_store_retain(&rep, store, &p);
    if (rc || e.rc) {
        print_error("retain: %s, export: %s: %s\n", ar_code_name(rc), ar_code_name(e.rc), ar_store_errmsg(store));
        fail();
    }
    assert_int_equal(rep.considered, 30);
    assert_int_equal(rep.deleted, 0);
    assert_int_equal(e.runs_seen, 30);
    /* and the store goes on afterwards */
    size_t bytes = 0;
    assert_int_equal(ar_store_export(NULL, store, NULL, count_bytes, &bytes), AR_OK);
    ar_run *run = test_begin(store, "after");
    ar_run_close(run);
    ar_store_close(store);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_export_import_export_gives_the_same_bytes),
    cmocka_unit_test(test_importing_twice_skips_what_is_there),
    cmocka_unit_test(test_an_export_imported_into_its_own_store_adds_nothing),
    cmocka_unit_test(test_a_bad_line_names_its_number_and_stores_nothing_of_it),
    cmocka_unit_test(test_copy_between_stores_and_backends_keeps_every_byte),
    cmocka_unit_test(test_export_selects_runs_and_their_agents_events),
    cmocka_unit_test(test_otlp_is_the_same_at_every_export),
    cmocka_unit_test(test_export_memory_does_not_grow_with_the_store),
    cmocka_unit_test(test_the_write_function_may_record_through_the_store_it_exports),
    cmocka_unit_test(test_a_run_longer_than_a_batch_exports_whole),
    cmocka_unit_test(test_an_export_from_inside_a_retention_rule_reads_and_the_scan_goes_on),
};

TEST_GROUP(export_group, "export", tests);
