/* Results as text: tables for people, CSV for spreadsheets and plotting,
 * JSON for programs. Numbers are printed in the C locale. */
#include <math.h>
#include <string.h>

#include "sim/sim.h"

void sim_json_string(FILE *out, const char *s) {
  fputc('"', out);
  for (; s && *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\') fprintf(out, "\\%c", ch);
    else if (ch == '\n') fputs("\\n", out);
    else if (ch == '\t') fputs("\\t", out);
    else if (ch < 0x20) fprintf(out, "\\u%04x", ch);
    else fputc(ch, out);
  }
  fputc('"', out);
}

/* A JSON number: finite doubles only (JSON has no NaN or infinity). */
static void json_num(FILE *out, double v) {
  if (!isfinite(v)) v = 0;
  if (v == floor(v) && fabs(v) < 1e15) fprintf(out, "%.0f", v);
  else fprintf(out, "%.6g", v);
}

static double ms(resil_ns d) { return (double)d / (double)RESIL_MSEC; }
static double secs(resil_ns d) { return (double)d / (double)RESIL_SEC; }

static const char *fmt_dur(resil_ns d, char buf[32]) {
  resil_duration_format(d, buf, 32);
  return buf;
}

/* ---- contention ----------------------------------------------------------------- */

static void contention_grid(FILE *out, const sim_contention_result *r, const char *title,
                            int calls) {
  const sim_contention_config *c = &r->cfg;
  size_t ns = c->nstrategies, per = ns ? r->npoints / ns : 0;
  fprintf(out, "%s\n%-8s", title, "clients");
  for (size_t s = 0; s < ns; s++) fprintf(out, " %13s", sim_strategy_name(c->strategies[s]));
  fputc('\n', out);
  for (size_t j = 0; j < per; j++) {
    fprintf(out, "%-8u", (unsigned)r->points[j].clients);
    for (size_t s = 0; s < ns; s++) {
      const sim_contention_point *p = &r->points[s * per + j];
      fprintf(out, " %13.1f", calls ? p->calls : p->time_ms);
    }
    fputc('\n', out);
  }
}

void sim_contention_print(FILE *out, const sim_contention_result *r, sim_format f) {
  const sim_contention_config *c = &r->cfg;
  if (f == SIM_FMT_CSV) {
    fputs("strategy,clients,time_ms,calls\n", out);
    for (size_t i = 0; i < r->npoints; i++) {
      const sim_contention_point *p = &r->points[i];
      fprintf(out, "%s,%u,%.3f,%.2f\n", sim_strategy_name(p->strategy), (unsigned)p->clients,
              p->time_ms, p->calls);
    }
    return;
  }
  if (f == SIM_FMT_JSON) {
    fprintf(out, "{\n  \"scenario\": \"contention\",\n  \"seed\": %llu,\n  \"runs\": %u,\n",
            (unsigned long long)c->seed, (unsigned)c->runs);
    fputs("  \"base_ms\": ", out);
    json_num(out, ms(c->base));
    fputs(",\n  \"cap_ms\": ", out);
    json_num(out, ms(c->cap));
    fputs(",\n  \"hop_mean_ms\": ", out);
    json_num(out, ms(c->hop_mean));
    fputs(",\n  \"hop_sd_ms\": ", out);
    json_num(out, ms(c->hop_sd));
    fputs(",\n  \"points\": [\n", out);
    for (size_t i = 0; i < r->npoints; i++) {
      const sim_contention_point *p = &r->points[i];
      fputs("    {\"strategy\": ", out);
      sim_json_string(out, sim_strategy_name(p->strategy));
      fprintf(out, ", \"clients\": %u, \"time_ms\": ", (unsigned)p->clients);
      json_num(out, p->time_ms);
      fputs(", \"calls\": ", out);
      json_num(out, p->calls);
      fputs(", \"time_ms_sd\": ", out);
      json_num(out, p->time_ms_sd);
      fputs(", \"calls_sd\": ", out);
      json_num(out, p->calls_sd);
      fprintf(out, ", \"incomplete_runs\": %u}%s\n", (unsigned)p->incomplete_runs,
              i + 1 < r->npoints ? "," : "");
    }
    fputs("  ]\n}\n", out);
    return;
  }
  char b1[32], b2[32];
  fprintf(out,
          "contention: N clients, one optimistic write each; backoff base %s, cap %s; "
          "mean of %u run%s, seed %llu\n\n",
          fmt_dur(c->base, b1), fmt_dur(c->cap, b2), (unsigned)c->runs, c->runs == 1 ? "" : "s",
          (unsigned long long)c->seed);
  contention_grid(out, r, "Time until every client has written (ms)", 0);
  fputc('\n', out);
  contention_grid(out, r, "Write calls", 1);
  uint32_t incomplete = 0;
  for (size_t i = 0; i < r->npoints; i++) incomplete += r->points[i].incomplete_runs;
  if (incomplete) fprintf(out, "\n%u run(s) ended with a client that never wrote\n", incomplete);
}

/* ---- collapse ------------------------------------------------------------------- */

static void verdict_text(const sim_collapse_result *r, const sim_collapse_series *s, char *buf,
                         size_t len) {
  if (s->recovered) snprintf(buf, len, "recovered at %.4gs", s->recovered_at_s);
  else if (s->runs_recovered == 0) snprintf(buf, len, "stayed collapsed");
  else
    snprintf(buf, len, "collapsed (%u/%u recovered)", (unsigned)s->runs_recovered,
             (unsigned)r->cfg.runs);
}

static void collapse_json(FILE *out, const sim_collapse_result *r) {
  const sim_collapse_config *c = &r->cfg;
  fprintf(out, "{\n  \"scenario\": \"collapse\",\n  \"seed\": %llu,\n  \"runs\": %u,\n",
          (unsigned long long)c->seed, (unsigned)c->runs);
  fputs("  \"rate\": ", out);
  json_num(out, c->rate);
  fputs(",\n  \"spike_rate\": ", out);
  json_num(out, c->spike_rate);
  fputs(",\n  \"spike_from_s\": ", out);
  json_num(out, secs(c->spike_from));
  fputs(",\n  \"spike_to_s\": ", out);
  json_num(out, secs(c->spike_to));
  fputs(",\n  \"duration_s\": ", out);
  json_num(out, secs(c->duration));
  fputs(",\n  \"timeout_s\": ", out);
  json_num(out, secs(c->timeout));
  fprintf(out, ",\n  \"attempts\": %u,\n  \"policies\": [\n", (unsigned)c->attempts);
  for (size_t i = 0; i < r->nseries; i++) {
    const sim_collapse_series *s = &r->series[i];
    char name[SIM_POLICY_NAME_MAX];
    fputs("    {\n      \"policy\": ", out);
    sim_json_string(out, sim_policy_name(s->policy, name));
    fprintf(out, ",\n      \"recovered\": %s,\n      \"recovered_at_s\": ",
            s->recovered ? "true" : "false");
    if (s->recovered) json_num(out, s->recovered_at_s);
    else fputs("null", out);
    fprintf(out, ",\n      \"runs_recovered\": %u,\n      \"success_rate\": ",
            (unsigned)s->runs_recovered);
    json_num(out, s->success_rate);
    fputs(",\n      \"attempts_per_request\": ", out);
    json_num(out, s->attempts_per_request);
    fputs(",\n      \"peak_inflight\": ", out);
    json_num(out, s->peak_inflight);
    fputs(",\n      \"seconds\": {\n", out);
    static const char *const fields[] = {"new", "attempts", "retries", "timeouts", "successes",
                                         "rejected", "inflight", "succeeded_share"};
    for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++) {
      fprintf(out, "        \"%s\": [", fields[f]);
      for (size_t j = 0; j < s->nsec; j++) {
        const sim_collapse_second *d = &s->sec[j];
        const double v[] = {d->new_requests, d->attempts, d->retries,  d->timeouts,
                            d->successes,    d->rejected, d->inflight, d->succeeded_share};
        if (j) fputs(", ", out);
        json_num(out, v[f]);
      }
      fprintf(out, "]%s\n", f + 1 < sizeof fields / sizeof fields[0] ? "," : "");
    }
    fprintf(out, "      }\n    }%s\n", i + 1 < r->nseries ? "," : "");
  }
  fputs("  ]\n}\n", out);
}

void sim_collapse_print(FILE *out, const sim_collapse_result *r, sim_format f) {
  const sim_collapse_config *c = &r->cfg;
  char name[SIM_POLICY_NAME_MAX];
  if (f == SIM_FMT_CSV) {
    fputs("policy,second,new,attempts,retries,timeouts,successes,rejected,inflight,"
          "succeeded_share\n",
          out);
    for (size_t i = 0; i < r->nseries; i++) {
      const sim_collapse_series *s = &r->series[i];
      sim_policy_name(s->policy, name);
      for (size_t j = 0; j < s->nsec; j++) {
        const sim_collapse_second *d = &s->sec[j];
        fprintf(out, "%s,%zu,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.4f\n", name, j,
                d->new_requests, d->attempts, d->retries, d->timeouts, d->successes,
                d->rejected, d->inflight, d->succeeded_share);
      }
    }
    return;
  }
  if (f == SIM_FMT_JSON) {
    collapse_json(out, r);
    return;
  }
  char t1[32];
  fprintf(out,
          "collapse: %g req/s, %g req/s from %gs to %gs, %gs in all; timeout %s, up to %u "
          "attempts; %u run%s, seed %llu\n\n",
          c->rate, c->spike_rate, secs(c->spike_from), secs(c->spike_to), secs(c->duration),
          fmt_dur(c->timeout, t1), (unsigned)c->attempts, (unsigned)c->runs,
          c->runs == 1 ? "" : "s", (unsigned long long)c->seed);
  int w = 6; /* "policy" */
  for (size_t i = 0; i < r->nseries; i++) {
    int n = (int)strlen(sim_policy_name(r->series[i].policy, name));
    if (n > w) w = n;
  }
  fprintf(out, "%-*s  %-28s %8s  %12s  %9s\n", w, "policy", "verdict", "success", "attempts/req",
          "peak load");
  for (size_t i = 0; i < r->nseries; i++) {
    const sim_collapse_series *s = &r->series[i];
    char v[64];
    verdict_text(r, s, v, sizeof v);
    fprintf(out, "%-*s  %-28s %7.1f%%  %12.2f  %9.0f\n", w, sim_policy_name(s->policy, name), v,
            100 * s->success_rate, s->attempts_per_request, s->peak_inflight);
  }

  /* A timeline: the share of requests that succeeded, by arrival time. */
  size_t nsec = r->nseries ? r->series[0].nsec : 0;
  size_t width = nsec <= 160 ? 10 : (nsec / 16 + 9) / 10 * 10;
  fprintf(out, "\nRequests that succeeded, by arrival time (%%)\n%-*s", w, "policy");
  for (size_t a = 0; a < nsec; a += width) {
    char head[32];
    snprintf(head, sizeof head, "%zus", a);
    fprintf(out, " %5s", head);
  }
  fputc('\n', out);
  for (size_t i = 0; i < r->nseries; i++) {
    const sim_collapse_series *s = &r->series[i];
    fprintf(out, "%-*s", w, sim_policy_name(s->policy, name));
    for (size_t a = 0; a < nsec; a += width) {
      double arrived = 0, ok = 0;
      for (size_t j = a; j < a + width && j < nsec; j++) {
        arrived += s->sec[j].new_requests;
        ok += s->sec[j].succeeded_share * s->sec[j].new_requests;
      }
      fprintf(out, " %5.0f", arrived > 0 ? 100 * ok / arrived : 100.0);
    }
    fputc('\n', out);
  }
  fprintf(out,
          "\n(peak load: the most attempts in progress on the server at once; a second is "
          "healthy when\n%.0f%% of the requests that arrived in it succeeded, and a policy "
          "recovered when every second\nfrom then on is healthy)\n",
          100 * SIM_HEALTHY_SHARE);
}

/* ---- independent ------------------------------------------------------------------ */

static void independent_grid(FILE *out, const sim_independent_result *r, const char *title,
                             int success) {
  const sim_independent_config *c = &r->cfg;
  char name[SIM_POLICY_NAME_MAX];
  int w = 16; /* "no guard, theory" */
  for (size_t i = 0; i < c->npolicies; i++) {
    int n = (int)strlen(sim_policy_name(c->policies[i], name));
    if (n > w) w = n;
  }
  fprintf(out, "%s\n%-6s", title, "p");
  for (size_t i = 0; i < c->npolicies; i++)
    fprintf(out, "  %*s", w, sim_policy_name(c->policies[i], name));
  fprintf(out, "  %*s\n", w, "no guard, theory");
  for (size_t j = 0; j < c->np; j++) {
    fprintf(out, "%-6.3g", c->p[j]);
    for (size_t i = 0; i <= c->npolicies; i++) {
      int theory = i == c->npolicies;
      const sim_independent_point *p = theory ? NULL : &r->points[i * c->np + j];
      if (success)
        fprintf(out, "  %*.2f%%", w - 1,
                100 * (theory ? sim_theory_success(c->p[j], c->attempts) : p->success_rate));
      else fprintf(out, "  %*.3f", w, theory ? sim_theory_load(c->p[j], c->attempts) : p->load);
    }
    fputc('\n', out);
  }
}

void sim_independent_print(FILE *out, const sim_independent_result *r, sim_format f) {
  const sim_independent_config *c = &r->cfg;
  char name[SIM_POLICY_NAME_MAX];
  if (f == SIM_FMT_CSV) {
    fputs("policy,p,requests,calls,retries,rejected,successes,load,success_rate\n", out);
    for (size_t i = 0; i < r->npoints; i++) {
      const sim_independent_point *p = &r->points[i];
      fprintf(out, "%s,%g,%llu,%llu,%llu,%llu,%llu,%.5f,%.5f\n",
              sim_policy_name(p->policy, name), p->p, (unsigned long long)p->requests,
              (unsigned long long)p->calls, (unsigned long long)p->retries,
              (unsigned long long)p->rejected, (unsigned long long)p->successes, p->load,
              p->success_rate);
    }
    return;
  }
  if (f == SIM_FMT_JSON) {
    fprintf(out,
            "{\n  \"scenario\": \"independent\",\n  \"seed\": %llu,\n  \"runs\": %u,\n"
            "  \"clients\": %u,\n  \"client_rate\": ",
            (unsigned long long)c->seed, (unsigned)c->runs, (unsigned)c->clients);
    json_num(out, c->client_rate);
    fputs(",\n  \"duration_s\": ", out);
    json_num(out, secs(c->duration));
    fprintf(out, ",\n  \"attempts\": %u,\n  \"budget_rate\": ", (unsigned)c->attempts);
    json_num(out, c->guard.budget_rate);
    fputs(",\n  \"budget_burst\": ", out);
    json_num(out, c->guard.budget_burst);
    fputs(",\n  \"points\": [\n", out);
    for (size_t i = 0; i < r->npoints; i++) {
      const sim_independent_point *p = &r->points[i];
      fputs("    {\"policy\": ", out);
      sim_json_string(out, sim_policy_name(p->policy, name));
      fputs(", \"p\": ", out);
      json_num(out, p->p);
      fprintf(out,
              ", \"requests\": %llu, \"calls\": %llu, \"retries\": %llu, \"rejected\": %llu, "
              "\"successes\": %llu, \"load\": ",
              (unsigned long long)p->requests, (unsigned long long)p->calls,
              (unsigned long long)p->retries, (unsigned long long)p->rejected,
              (unsigned long long)p->successes);
      json_num(out, p->load);
      fputs(", \"success_rate\": ", out);
      json_num(out, p->success_rate);
      fprintf(out, "}%s\n", i + 1 < r->npoints ? "," : "");
    }
    fputs("  ],\n  \"theory\": [\n", out);
    for (size_t j = 0; j < c->np; j++) {
      fputs("    {\"p\": ", out);
      json_num(out, c->p[j]);
      fputs(", \"load\": ", out);
      json_num(out, sim_theory_load(c->p[j], c->attempts));
      fputs(", \"success_rate\": ", out);
      json_num(out, sim_theory_success(c->p[j], c->attempts));
      fprintf(out, "}%s\n", j + 1 < c->np ? "," : "");
    }
    fputs("  ]\n}\n", out);
    return;
  }
  char d1[32];
  fprintf(out,
          "independent: %u clients x %g req/s for %s; each call fails with probability p; up "
          "to %u attempts;\nbudget: a token bucket of %g/s per client, burst %g; %u run%s, seed %llu\n\n",
          (unsigned)c->clients, c->client_rate, fmt_dur(c->duration, d1), (unsigned)c->attempts,
          c->guard.budget_rate, c->guard.budget_burst, (unsigned)c->runs, c->runs == 1 ? "" : "s",
          (unsigned long long)c->seed);
  independent_grid(out, r, "Load multiplier (calls / requests)", 0);
  fputc('\n', out);
  independent_grid(out, r, "Success rate", 1);
}
