/* A small line-chart writer: one standalone SVG 1.1 document with a title
 * and panels stacked vertically. Each panel has a frame, gridlines, ticks
 * with labels, axis labels, optional shaded bands, a polyline per series and
 * a legend to the right of the plot. Series with the same name get the same
 * colour in every panel. Text is XML-escaped; coordinates are printed with
 * one decimal in the C locale (the CLI never calls setlocale).
 *
 * SVG cannot measure text, so widths are estimated at 0.65 em per character,
 * which is generous for the sans-serif faces browsers pick (DejaVu Sans,
 * the widest common one, averages about 0.62 em on these labels). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sim/sim.h"

#define WIDTH 860.0
#define HEADER 74.0      /* title and subtitle */
#define PANEL_GAP 16.0
#define PLOT_MIN_H 230.0
#define LEFT 84.0        /* y tick labels and the y axis label */
#define RIGHT_PAD 14.0
#define PANEL_TOP 40.0   /* panel title above the plot */
#define PANEL_BOTTOM 58.0 /* x tick labels and the x axis label below it */
#define LEGEND_ROW 20.0
#define CHAR_W 7.8       /* 12px text, DejaVu Sans's average is ~7.4 */
#define MAX_NAMES 64

static const char *const palette[] = {
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#7f7f7f", "#bcbd22", "#393b79", "#ad494a", "#637939", "#8c6d31", "#843c39", "#7b4173",
};
#define N_COLORS (sizeof palette / sizeof palette[0])

/* ---- text ------------------------------------------------------------------ */

static void put_escaped(FILE *out, const char *s) {
  for (; s && *s; s++) {
    switch (*s) {
      case '&': fputs("&amp;", out); break;
      case '<': fputs("&lt;", out); break;
      case '>': fputs("&gt;", out); break;
      case '"': fputs("&quot;", out); break;
      case '\'': fputs("&apos;", out); break;
      default:
        /* Control characters are not allowed in XML 1.0 text. */
        if ((unsigned char)*s < 0x20 && *s != '\t' && *s != '\n') fputc('?', out);
        else fputc(*s, out);
    }
  }
}

/* Characters as a browser counts them: UTF-8 continuation bytes are free. */
static size_t text_len(const char *s) {
  size_t n = 0;
  for (; s && *s; s++)
    if (((unsigned char)*s & 0xC0) != 0x80) n++;
  return n;
}

static void text(FILE *out, double x, double y, const char *anchor, const char *style,
                 const char *s) {
  fprintf(out, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\"%s%s>", x, y, anchor,
          style ? " " : "", style ? style : "");
  put_escaped(out, s);
  fputs("</text>\n", out);
}

/* ---- axes -------------------------------------------------------------------- */

typedef struct axis {
  double lo, hi;    /* in axis units (log10 of the value on a log axis) */
  int log;
  double ticks[64]; /* values, in data units */
  size_t nticks;
  int decimals;     /* for linear tick labels */
  int percent;
} axis;

/* 1, 2, 2.5 or 5 times a power of ten, near range / target. */
static double nice_step(double range, int target) {
  double raw = range / target;
  double mag = pow(10, floor(log10(raw)));
  double f = raw / mag;
  double nf = f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10;
  return nf * mag;
}

static int decimals_for(double step) {
  for (int d = 0; d < 6; d++) {
    double v = step * pow(10, d);
    if (fabs(v - floor(v + 0.5)) < 1e-6 * (v > 1 ? v : 1)) return d;
  }
  return 6;
}

static void linear_axis(axis *a, double dmin, double dmax, int target, int from_zero) {
  memset(a, 0, sizeof *a);
  if (from_zero && dmin > 0) dmin = 0;
  if (!(dmax > dmin)) dmax = dmin + 1;
  double step = nice_step(dmax - dmin, target);
  a->lo = floor(dmin / step + 1e-9) * step;
  a->hi = ceil(dmax / step - 1e-9) * step;
  a->decimals = decimals_for(step);
  for (double v = a->lo; v <= a->hi + step * 1e-6 && a->nticks < 64; v += step)
    a->ticks[a->nticks++] = fabs(v) < step * 1e-9 ? 0 : v;
}

/* The largest 1, 2 or 5 times a power of ten <= v (down), or the smallest
 * >= v (up). */
static double nice125(double v, int up) {
  static const double m[] = {1, 2, 5, 10};
  double p = pow(10, floor(log10(v)));
  if (up) {
    for (int i = 0; i < 4; i++)
      if (m[i] * p >= v * (1 - 1e-9)) return m[i] * p;
    return 10 * p;
  }
  for (int i = 3; i >= 0; i--)
    if (m[i] * p <= v * (1 + 1e-9)) return m[i] * p;
  return p;
}

static void log_axis(axis *a, double pmin, double dmax) {
  memset(a, 0, sizeof *a);
  a->log = 1;
  if (!(pmin > 0)) pmin = 1;
  if (!(dmax > pmin)) dmax = pmin * 10;
  double lo = nice125(pmin, 0), hi = nice125(dmax, 1);
  a->lo = log10(lo);
  a->hi = log10(hi);
  int minor = a->hi - a->lo <= 2.01; /* few decades: label 2 and 5 too */
  for (int e = (int)floor(a->lo + 1e-9); e <= (int)ceil(a->hi - 1e-9) && a->nticks < 60; e++) {
    static const double m[] = {1, 2, 5};
    for (int i = 0; i < 3; i++) {
      double v = m[i] * pow(10, e);
      int at_end = fabs(log10(v) - a->lo) < 1e-9 || fabs(log10(v) - a->hi) < 1e-9;
      if ((i == 0 || minor || at_end) && log10(v) >= a->lo - 1e-9 && log10(v) <= a->hi + 1e-9)
        a->ticks[a->nticks++] = v;
    }
  }
}

static double axis_pos(const axis *a, double v) {
  double u;
  if (a->log) u = v > 0 ? log10(v) : a->lo;
  else u = v;
  if (u < a->lo) u = a->lo;
  if (u > a->hi) u = a->hi;
  return (u - a->lo) / (a->hi - a->lo);
}

/* Digits grouped by thousands from 10,000 up: "100,000". */
static void grouped(double v, int decimals, char *buf, size_t len) {
  char raw[64];
  snprintf(raw, sizeof raw, "%.*f", decimals, v);
  const char *dot = strchr(raw, '.');
  size_t ilen = dot ? (size_t)(dot - raw) : strlen(raw), neg = raw[0] == '-';
  if (fabs(v) < 10000 || ilen - neg > 15) {
    snprintf(buf, len, "%s", raw);
    return;
  }
  size_t o = 0;
  for (size_t i = 0; i < ilen && o + 2 < len; i++) {
    buf[o++] = raw[i];
    size_t left = ilen - i - 1;
    if (left > 0 && left % 3 == 0 && i >= neg) buf[o++] = ',';
  }
  snprintf(buf + o, len - o, "%s", dot ? dot : "");
}

static void tick_label(const axis *a, double v, char *buf, size_t len) {
  if (a->percent) snprintf(buf, len, "%.0f%%", v * 100);
  else if (a->log) grouped(v, v < 1 ? decimals_for(v) : 0, buf, len);
  else grouped(v, a->decimals, buf, len);
}

/* ---- colours ----------------------------------------------------------------- */

typedef struct names {
  const char *name[MAX_NAMES];
  size_t n;
} names;

static const char *color_of(names *nm, const sim_series *s) {
  if (s->color) return s->color;
  for (size_t i = 0; i < nm->n; i++)
    if (strcmp(nm->name[i], s->name) == 0) return palette[i % N_COLORS];
  if (nm->n < MAX_NAMES) nm->name[nm->n++] = s->name;
  return palette[(nm->n - 1) % N_COLORS];
}

/* ---- one panel --------------------------------------------------------------- */

/* The legend: 14px gap, 22px line sample, 6px, the text, 10px margin. */
static double legend_width(const sim_panel *p) {
  size_t longest = 0;
  for (size_t i = 0; i < p->nseries; i++)
    if (text_len(p->series[i].name) > longest) longest = text_len(p->series[i].name);
  for (size_t i = 0; i < p->nbands; i++)
    if (text_len(p->bands[i].label) > longest) longest = text_len(p->bands[i].label);
  return 52.0 + (double)longest * CHAR_W;
}

static double plot_height(const sim_panel *p) {
  double h = (double)(p->nseries + p->nbands) * LEGEND_ROW + 12;
  return h > PLOT_MIN_H ? h : PLOT_MIN_H;
}

static double panel_height(const sim_panel *p) {
  return PANEL_TOP + plot_height(p) + PANEL_BOTTOM;
}

static void data_range(const sim_panel *p, double *xmin, double *xmax, double *ymin,
                       double *ymax, double *ypos_min) {
  *xmin = *ymin = *ypos_min = INFINITY;
  *xmax = *ymax = -INFINITY;
  for (size_t i = 0; i < p->nseries; i++)
    for (size_t j = 0; j < p->series[i].n; j++) {
      double x = p->series[i].x[j], y = p->series[i].y[j];
      if (!isfinite(x) || !isfinite(y)) continue;
      if (x < *xmin) *xmin = x;
      if (x > *xmax) *xmax = x;
      if (y < *ymin) *ymin = y;
      if (y > *ymax) *ymax = y;
      if (y > 0 && y < *ypos_min) *ypos_min = y;
    }
  if (!isfinite(*xmin)) *xmin = 0, *xmax = 1;
  if (!isfinite(*ymin)) *ymin = 0, *ymax = 1;
}

static void draw_panel(FILE *out, const sim_panel *p, double top, names *nm) {
  double lw = legend_width(p);
  double x0 = LEFT, x1 = WIDTH - RIGHT_PAD - lw;
  double y0 = top + PANEL_TOP, y1 = y0 + plot_height(p);
  double w = x1 - x0, h = y1 - y0;
  char buf[64];

  double xmin, xmax, ymin, ymax, ypos;
  data_range(p, &xmin, &xmax, &ymin, &ymax, &ypos);
  axis ax, ay;
  linear_axis(&ax, xmin, xmax, 10, 0);
  if (p->y_log) log_axis(&ay, ypos, ymax);
  else if (p->y_percent) {
    linear_axis(&ay, 0, ymax > 1 ? ymax : 1, 5, 1);
    ay.percent = 1;
  } else linear_axis(&ay, ymin, ymax, 6, 1);

  fputs("<g>\n", out);
  text(out, x0, top + 22, "start", "font-size=\"14\" font-weight=\"bold\"", p->title);

  /* Bands first, so everything else draws over them. */
  for (size_t i = 0; i < p->nbands; i++) {
    double a = x0 + axis_pos(&ax, p->bands[i].x0) * w, b = x0 + axis_pos(&ax, p->bands[i].x1) * w;
    fprintf(out, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#f4a3a3\" "
                 "fill-opacity=\"0.3\"/>\n", a, y0, b - a, h);
  }

  /* Gridlines and tick labels. */
  for (size_t i = 0; i < ay.nticks; i++) {
    double y = y1 - axis_pos(&ay, ay.ticks[i]) * h;
    fprintf(out, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e3e3e3\"/>\n",
            x0, y, x1, y);
    fprintf(out, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>\n",
            x0 - 5, y, x0, y);
    tick_label(&ay, ay.ticks[i], buf, sizeof buf);
    text(out, x0 - 8, y + 4, "end", "font-size=\"11\"", buf);
  }
  for (size_t i = 0; i < ax.nticks; i++) {
    double x = x0 + axis_pos(&ax, ax.ticks[i]) * w;
    fprintf(out, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#efefef\"/>\n",
            x, y0, x, y1);
    fprintf(out, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>\n", x,
            y1, x, y1 + 5);
    tick_label(&ax, ax.ticks[i], buf, sizeof buf);
    text(out, x, y1 + 18, "middle", "font-size=\"11\"", buf);
  }
  fprintf(out, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
               "stroke=\"#333\"/>\n", x0, y0, w, h);
  text(out, (x0 + x1) / 2, y1 + 42, "middle", "font-size=\"12\"", p->xlabel);
  fprintf(out, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\" "
               "transform=\"rotate(-90 %.1f %.1f)\">", 20.0, (y0 + y1) / 2, 20.0, (y0 + y1) / 2);
  put_escaped(out, p->ylabel);
  fputs("</text>\n", out);

  /* Series. */
  for (size_t i = 0; i < p->nseries; i++) {
    const sim_series *s = &p->series[i];
    const char *color = color_of(nm, s);
    fprintf(out, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%s\" "
                 "stroke-linejoin=\"round\"%s points=\"", color, s->dashed ? "1.5" : "2",
            s->dashed ? " stroke-dasharray=\"6 4\"" : "");
    for (size_t j = 0; j < s->n; j++) {
      if (!isfinite(s->x[j]) || !isfinite(s->y[j])) continue;
      fprintf(out, "%s%.1f,%.1f", j ? " " : "", x0 + axis_pos(&ax, s->x[j]) * w,
              y1 - axis_pos(&ay, s->y[j]) * h);
    }
    fputs("\"/>\n", out);
    if (s->n <= 40 && !s->dashed)
      for (size_t j = 0; j < s->n; j++)
        if (isfinite(s->x[j]) && isfinite(s->y[j]))
          fprintf(out, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"/>\n",
                  x0 + axis_pos(&ax, s->x[j]) * w, y1 - axis_pos(&ay, s->y[j]) * h, color);
  }

  /* Legend, beside the plot so it never covers a line. */
  double lx = x1 + 14, ly = y0 + 12;
  for (size_t i = 0; i < p->nseries; i++) {
    const sim_series *s = &p->series[i];
    double y = ly + (double)i * LEGEND_ROW;
    fprintf(out, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                 "stroke-width=\"3\"%s/>\n", lx, y - 4, lx + 22, y - 4, color_of(nm, s),
            s->dashed ? " stroke-dasharray=\"6 3\"" : "");
    text(out, lx + 28, y, "start", "font-size=\"12\"", s->name);
  }
  for (size_t i = 0; i < p->nbands; i++) {
    double y = ly + (double)(p->nseries + i) * LEGEND_ROW;
    fprintf(out, "<rect x=\"%.1f\" y=\"%.1f\" width=\"22\" height=\"12\" fill=\"#f4a3a3\" "
                 "fill-opacity=\"0.5\"/>\n", lx, y - 10);
    text(out, lx + 28, y, "start", "font-size=\"12\"", p->bands[i].label);
  }
  fputs("</g>\n", out);
}

int sim_svg_write(FILE *out, const char *title, const char *subtitle, const sim_panel *panels,
                  size_t npanels) {
  double height = HEADER;
  for (size_t i = 0; i < npanels; i++) height += panel_height(&panels[i]) + PANEL_GAP;
  fputs("<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n", out);
  fprintf(out, "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%.0f\" "
               "height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
               "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n",
          WIDTH, height, WIDTH, height);
  fputs("<title>", out);
  put_escaped(out, title);
  fputs("</title>\n", out);
  fprintf(out, "<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" fill=\"#ffffff\"/>\n", WIDTH,
          height);
  text(out, WIDTH / 2, 30, "middle", "font-size=\"18\" font-weight=\"bold\"", title);
  if (subtitle) text(out, WIDTH / 2, 52, "middle", "font-size=\"12\" fill=\"#555\"", subtitle);
  names nm;
  memset(&nm, 0, sizeof nm);
  double top = HEADER;
  for (size_t i = 0; i < npanels; i++) {
    draw_panel(out, &panels[i], top, &nm);
    top += panel_height(&panels[i]) + PANEL_GAP;
  }
  fputs("</svg>\n", out);
  return ferror(out) ? -1 : 0;
}
