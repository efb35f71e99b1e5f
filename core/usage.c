/* usage.c -- token and cost accounting: step checks, run totals, counters JSON. */
#include "internal.h"
#include "json.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

static int counter_name_ok(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > AR_COUNTER_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return 0;
    }
    return strcmp(name, "input_tokens") && strcmp(name, "output_tokens") &&
           strcmp(name, "total_tokens") && strcmp(name, "cost");
}

int ar_usage_check(ar_err *err, const char *what, const ar_usage *u)
{
    if (!(u->input_tokens >= 0 && u->input_tokens <= AR_MAX_COUNT))
        return ar_fail(err, AR_EMISUSE, "%s.input_tokens must be an integer in 0..2^53", what);
    if (!(u->output_tokens >= 0 && u->output_tokens <= AR_MAX_COUNT))
        return ar_fail(err, AR_EMISUSE, "%s.output_tokens must be an integer in 0..2^53", what);
    /* each within 2^53, their sum may not be: total_tokens must stay exact too */
    int64_t sum = u->input_tokens + u->output_tokens;
    if (sum > AR_MAX_COUNT)
        return ar_fail(err, AR_EMISUSE, "%s.total_tokens (input_tokens + output_tokens = %lld) must be in 0..2^53",
                       what, (long long)sum);
    if (u->total_tokens != 0 && u->total_tokens != sum)
        return ar_fail(err, AR_EMISUSE, "%s.total_tokens (%lld) must equal input_tokens + output_tokens (%lld)",
                       what, (long long)u->total_tokens, (long long)sum);
    if (u->n_extra && !u->extra)
        return ar_fail(err, AR_EMISUSE, "%s.extra is NULL with n_extra > 0", what);
    for (size_t i = 0; i < u->n_extra; i++) {
        if (!counter_name_ok(u->extra[i].name))
            return ar_fail(err, AR_EMISUSE,
                           "%s counter name '%s' must be 1-64 characters of [A-Za-z0-9_.-] "
                           "and not a built-in field",
                           what, u->extra[i].name ? u->extra[i].name : "(null)");
        if (!(u->extra[i].value >= 0 && u->extra[i].value <= AR_MAX_COUNT))
            return ar_fail(err, AR_EMISUSE, "%s.%s must be an integer in 0..2^53", what, u->extra[i].name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(u->extra[i].name, u->extra[j].name) == 0)
                return ar_fail(err, AR_EMISUSE, "%s.%s is given twice", what, u->extra[i].name);
    }
    return AR_OK;
}

int ar_step_check(ar_err *err, const ar_step *s, int64_t *cost_nanos, size_t *content_len)
{
    int rc;
    if (!s)
        return ar_fail(err, AR_EMISUSE, "step is NULL");
    if ((rc = ar_text_check(err, "step.kind", s->kind, 1, 1)) ||
        (rc = ar_text_check(err, "step.name", s->name, 0, 0)))
        return rc;
    if ((rc = ar_usage_check(err, "step.usage", &s->usage)))
        return rc;
    if (ar_cost_to_nanos(cost_nanos, s->usage.cost))
        return ar_fail(err, AR_EMISUSE, "step.cost must be a number in 0..9e9");
    if (s->duration_ms < 0)
        return ar_fail(err, AR_EMISUSE, "step.duration_ms must not be negative");
    *content_len = 0;
    if (s->content) {
        *content_len = s->content_len == AR_NUL_TERMINATED ? strlen(s->content) : s->content_len;
        if ((rc = ar_json_check(err, "step.content", s->content, *content_len, 0)))
            return rc;
    }
    return AR_OK;
}

void ar_totals_free(const ar_allocator *a, ar_totals *t)
{
    for (size_t i = 0; i < t->n_extra; i++)
        ar_mem_free(a, (void *)t->extra[i].name);
    ar_mem_free(a, t->extra);
    memset(t, 0, sizeof *t);
}

/* Index of `name` in t's sorted extras, or where it would go (*found = 0). */
static size_t counter_find(const ar_totals *t, const char *name, int *found)
{
    size_t lo = 0, hi = t->n_extra;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(t->extra[mid].name, name);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

/* Sums that callers checked with ar_totals_fit; only damaged rows read back
 * (ar_counters_parse) can pass int64, and they must not be undefined behaviour. */
static int64_t wrap_add(int64_t x, int64_t y)
{
    return (int64_t)((uint64_t)x + (uint64_t)y);
}

/* Whether total + add stays in 0..cap; a total already outside (a damaged or
 * schema-1 row) takes nothing more. No overflow: add <= cap. */
static int sum_fits(int64_t total, int64_t add, int64_t cap)
{
    return total >= 0 && total <= cap && add <= cap - total;
}

int ar_totals_fit(ar_err *err, const char *what, const ar_totals *t, const ar_usage *u, int64_t cost_nanos)
{
    static const char over[] = "%s would take the run's %s past 2^53 (it is %lld; the step adds %lld)";
    if (!sum_fits(t->input_tokens, u->input_tokens, AR_MAX_COUNT))
        return ar_fail(err, AR_EMISUSE, over, what, "input_tokens", (long long)t->input_tokens,
                       (long long)u->input_tokens);
    if (!sum_fits(t->output_tokens, u->output_tokens, AR_MAX_COUNT))
        return ar_fail(err, AR_EMISUSE, over, what, "output_tokens", (long long)t->output_tokens,
                       (long long)u->output_tokens);
    /* both within 2^53 now: their sums cannot overflow */
    if (t->input_tokens + t->output_tokens > AR_MAX_COUNT - (u->input_tokens + u->output_tokens))
        return ar_fail(err, AR_EMISUSE, over, what, "total_tokens", (long long)(t->input_tokens + t->output_tokens),
                       (long long)(u->input_tokens + u->output_tokens));
    for (size_t i = 0; i < u->n_extra; i++) {
        int found;
        size_t at = counter_find(t, u->extra[i].name, &found);
        int64_t have = found ? t->extra[at].value : 0;
        if (!sum_fits(have, u->extra[i].value, AR_MAX_COUNT))
            return ar_fail(err, AR_EMISUSE, over, what, u->extra[i].name, (long long)have,
                           (long long)u->extra[i].value);
    }
    int64_t cap = (int64_t)AR_MAX_COST * INT64_C(1000000000);
    if (!sum_fits(t->cost_nanos, cost_nanos, cap))
        return ar_fail(err, AR_EMISUSE, "%s would take the run's cost past 9e9 (it is %.9f; the step adds %.9f)",
                       what, ar_nanos_to_cost(t->cost_nanos), ar_nanos_to_cost(cost_nanos));
    return AR_OK;
}

int ar_totals_add(const ar_allocator *a, ar_totals *t, const ar_usage *u, int64_t cost_nanos)
{
    /* first make room for every new counter, so a failure changes nothing */
    size_t new_names = 0;
    for (size_t i = 0; i < u->n_extra; i++) {
        int found;
        counter_find(t, u->extra[i].name, &found);
        new_names += !found;
    }
    if (t->n_extra + new_names > t->cap_extra) {
        size_t cap = t->cap_extra ? t->cap_extra * 2 : 4;
        while (cap < t->n_extra + new_names)
            cap *= 2;
        ar_counter *grown = ar_mem_realloc(a, t->extra, cap * sizeof *grown);
        if (!grown)
            return AR_ENOMEM;
        t->extra = grown;
        t->cap_extra = cap;
    }
    char *names[64];
    char **name_buf = names;
    if (new_names > 64 && !(name_buf = ar_mem_alloc(a, new_names * sizeof *name_buf)))
        return AR_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < u->n_extra; i++) {
        int found;
        counter_find(t, u->extra[i].name, &found);
        if (found)
            continue;
        size_t len = strlen(u->extra[i].name);
        if (!(name_buf[k] = ar_mem_alloc(a, len + 1))) {
            while (k > 0)
                ar_mem_free(a, name_buf[--k]);
            if (name_buf != names)
                ar_mem_free(a, name_buf);
            return AR_ENOMEM;
        }
        memcpy(name_buf[k++], u->extra[i].name, len + 1);
    }
    k = 0;
    for (size_t i = 0; i < u->n_extra; i++) {
        int found;
        size_t at = counter_find(t, u->extra[i].name, &found);
        if (!found) {
            memmove(t->extra + at + 1, t->extra + at, (t->n_extra - at) * sizeof *t->extra);
            t->extra[at].name = name_buf[k++];
            t->extra[at].value = 0;
            t->n_extra++;
        }
        t->extra[at].value = wrap_add(t->extra[at].value, u->extra[i].value);
    }
    if (name_buf != names)
        ar_mem_free(a, name_buf);
    t->input_tokens = wrap_add(t->input_tokens, u->input_tokens);
    t->output_tokens = wrap_add(t->output_tokens, u->output_tokens);
    t->cost_nanos = wrap_add(t->cost_nanos, cost_nanos);
    return AR_OK;
}

int ar_totals_copy(const ar_allocator *a, ar_totals *dst, const ar_totals *src)
{
    ar_totals t = { src->iterations, src->input_tokens, src->output_tokens, src->cost_nanos, 0, 0, NULL };
    ar_usage u = { 0, 0, 0, 0.0, src->n_extra, src->extra };
    if (ar_totals_add(a, &t, &u, 0)) {
        ar_totals_free(a, &t);
        return AR_ENOMEM;
    }
    *dst = t;
    return AR_OK;
}

int ar_counters_json(const ar_allocator *a, char **buf, size_t *cap, size_t *len,
                     const ar_counter *c, size_t n)
{
    *len = 0;
    if (n == 0)
        return AR_OK;
    /* names are [A-Za-z0-9_.-]{1,64}: no escaping needed */
    size_t need = 2;
    for (size_t i = 0; i < n; i++)
        need += strlen(c[i].name) + 4 + 21;
    if (need + 1 > *cap) {
        char *grown = ar_mem_realloc(a, *buf, need + 1);
        if (!grown)
            return AR_ENOMEM;
        *buf = grown;
        *cap = need + 1;
    }
    char *p = *buf;
    size_t off = 0;
    p[off++] = '{';
    for (size_t i = 0; i < n; i++)
        off += (size_t)snprintf(p + off, *cap - off, "%s\"%s\":%lld", i ? "," : "",
                                c[i].name, (long long)c[i].value);
    p[off++] = '}';
    p[off] = '\0';
    *len = off;
    return AR_OK;
}

int ar_counters_parse(const ar_allocator *a, ar_totals *t, const char *json, size_t len)
{
    if (!json || len == 0)
        return AR_OK;
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) /* cJSON fails valid text only when memory runs out */
        return ar_json_validate(json, len, NULL, 0) == 0 ? AR_ENOMEM : AR_ECORRUPT;
    int rc = AR_OK;
    if (!cJSON_IsObject(root)) {
        rc = AR_ECORRUPT;
        goto cleanup;
    }
    size_t n = (size_t)cJSON_GetArraySize(root);
    ar_counter small[16];
    ar_counter *list = small;
    if (n > 16 && !(list = ar_mem_alloc(a, n * sizeof *list))) {
        rc = AR_ENOMEM;
        goto cleanup;
    }
    size_t k = 0;
    for (cJSON *it = root->child; it; it = it->next) {
        /* below 2^63: converting to int64 stays defined */
        if (!cJSON_IsNumber(it) || !it->string || !counter_name_ok(it->string) ||
            !(it->valuedouble >= 0 && it->valuedouble < 9223372036854775808.0)) {
            rc = AR_ECORRUPT;
            break;
        }
        list[k].name = it->string;
        list[k].value = (int64_t)it->valuedouble;
        k++;
    }
    if (rc == AR_OK) {
        ar_usage u = { 0, 0, 0, 0.0, k, list };
        size_t had = t->n_extra;
        rc = ar_totals_add(a, t, &u, 0);
        if (rc == AR_OK && t->n_extra - had != k) /* a name given twice */
            rc = AR_ECORRUPT;
    }
    if (list != small)
        ar_mem_free(a, list);
cleanup:
    cJSON_Delete(root);
    return rc;
}

int ar_budget_parse(ar_budget *out, const char *json, size_t len)
{
    ar_budget b = AR_BUDGET_INIT;
    cJSON *root = json ? cJSON_ParseWithLength(json, len) : NULL;
    /* cJSON fails valid text only when memory runs out: no silent "unlimited" */
    if (json && !root && ar_json_validate(json, len, NULL, 0) == 0)
        return AR_ENOMEM;
    if (json && !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return AR_ECORRUPT;
    }
    if (root) {
        for (cJSON *it = root->child; it; it = it->next) {
            if (!it->string || !ar_limit_name(it->string))
                continue; /* a limit a later version may know */
            if (!cJSON_IsNumber(it) || !(it->valuedouble >= 0)) {
                cJSON_Delete(root);
                return AR_ECORRUPT;
            }
            /* kept as stored, also past today's ranges (schema 1 allowed
             * them); only what int64 cannot hold is dropped */
            double v = it->valuedouble;
            int integral = v < 9223372036854775808.0;
            if (!strcmp(it->string, "max_steps")) { if (integral) b.max_steps = (int64_t)v; }
            else if (!strcmp(it->string, "max_input_tokens")) { if (integral) b.max_input_tokens = (int64_t)v; }
            else if (!strcmp(it->string, "max_output_tokens")) { if (integral) b.max_output_tokens = (int64_t)v; }
            else if (!strcmp(it->string, "max_tokens")) { if (integral) b.max_tokens = (int64_t)v; }
            else if (!strcmp(it->string, "max_cost")) b.max_cost = v;
            else if (!strcmp(it->string, "max_seconds")) b.max_seconds = v;
        }
    }
    cJSON_Delete(root);
    *out = b;
    return AR_OK;
}
