/* The fan-out checker of c_loadgen.c: what one receiver got, judged line by line. No I/O.

   Bytes go in as they arrive (`check_feed`, split anywhere); counts come out. Every
   sender's lines are known in advance, exactly as the server will forward them:

       guest-8: ~L00007:0000042:0000000000000000000:.............................\n
       ^ the server's prefix ^ sender and seq (the generator's numbers), padding to 64

   so a line is either byte for byte the one expected, or it is malformed; a bit per
   (sender, seq) then tells a new line from a duplicate, and the latest seq seen of each
   sender tells a line that came after a later one (reordered).

   Speed: a server forwards what it read from one sender as one block, so a receiver sees
   runs of hundreds of lines from one sender. A run is compared with that sender's
   expected bytes as a whole (memcmp), grown 1, 2, 4... lines while it matches and then
   halved at the first mismatch; only a line that does not start such a run (a notice, a
   duplicate, a fault) is looked at alone. harness/load.py's Swarm._verify does the same.

   A steady run (c_loadgen --steady) stamps each line with its send time, in the 19 digits
   that are zeros above, so no two lines of a run are alike in advance: there a line is
   compared byte for byte except for those digits, which must be digits, and the stamp is
   kept (`struct stamps`) for the caller to turn into a latency. One line at a time: a
   steady run is a few hundred thousand lines a second, not tens of millions, and a run
   of stamped lines could not be compared as a whole anyway.

   A header with the definitions in, included once by c_loadgen.c: the generator is one
   translation unit, built by one cc command. `self_test()` (c_loadgen --self-test) feeds
   the checker streams with each kind of fault and fails unless each is counted. */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LINE_SIZE 64 /* bytes in one load line, its newline included (harness/load.py) */
#define MAX_NAME 32  /* longest name a welcome line may give */
#define STAMP_AT 16  /* where the send time starts in a load line: after `~L%05d:%07d:` */
#define STAMP_DIGITS 19

struct sender {
    char prefix[MAX_NAME + 3]; /* "NAME: ", as the server puts it before each line */
    size_t prefix_len, width;  /* width: prefix and line, as a receiver gets it */
    int count;                 /* how many lines it sends: a line numbered past them is forged */
    char *lines;               /* what it sends: its load lines, back to back */
    char *forwarded;           /* what the others get: the prefix before each line */
};

/* Send times (CLOCK_MONOTONIC ns) of the lines checked, in arrival order; the caller turns
   each into a latency (now - stamp) once it has read the clock. Shared by every receiver. */
struct stamps {
    int64_t *ns;
    size_t n, cap;
};

struct check {
    int self;                  /* this receiver's own sender number */
    int senders, lines;        /* how many senders, lines each */
    const struct sender *from; /* NULL until the load begins */
    uint64_t *seen;            /* a bit per (sender, line) */
    int *next;                 /* per sender: the line after the latest one seen */
    char tail[4 * (LINE_SIZE + MAX_NAME)]; /* a line whose newline has not come yet */
    size_t tail_len;
    int tail_overflow;       /* the line in `tail` is longer than any expected */
    char name[MAX_NAME + 1]; /* from the welcome line */
    const char *token;       /* a reply being waited for, NULL when none */
    struct stamps *stamps;   /* a steady run: lines carry send times, kept here; NULL: none */
    long load, unique, duplicated, reordered, malformed, own, notices;
};

static void *allocate(size_t n) {
    void *p = calloc(n ? n : 1, 1);
    if (!p) {
        perror("c_loadgen: calloc");
        exit(1);
    }
    return p;
}

static void check_init(struct check *c, int self, int senders, int lines) {
    memset(c, 0, sizeof *c);
    c->self = self;
    c->senders = senders;
    c->lines = lines;
    c->seen = allocate(((size_t)senders * (size_t)lines + 63) / 64 * sizeof *c->seen);
    c->next = allocate((size_t)senders * sizeof *c->next);
}

static void load_line(char *out, int sender, int seq) {
    char head[48];
    int n = snprintf(head, sizeof head, "~L%05d:%07d:%019d:", sender, seq, 0);
    memset(out, '.', LINE_SIZE - 1);
    memcpy(out, head, (size_t)n);
    out[LINE_SIZE - 1] = '\n';
}

static void sender_init(struct sender *s, int index, const char *name, int lines) {
    s->count = lines;
    s->prefix_len = (size_t)snprintf(s->prefix, sizeof s->prefix, "%s: ", name);
    s->width = s->prefix_len + LINE_SIZE;
    s->lines = allocate((size_t)lines * LINE_SIZE);
    s->forwarded = allocate((size_t)lines * s->width);
    for (int q = 0; q < lines; q++) {
        char *line = s->lines + (size_t)q * LINE_SIZE;
        char *out = s->forwarded + (size_t)q * s->width;
        load_line(line, index, q);
        memcpy(out, s->prefix, s->prefix_len);
        memcpy(out + s->prefix_len, line, LINE_SIZE);
    }
}

static long digits(const char *p, int n) {
    long value = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        value = value * 10 + (p[i] - '0');
    }
    return value;
}

/* The send time in the STAMP_DIGITS at `p`, or -1 if one of them is not a digit. Unsigned
   arithmetic: 19 nines do not fit an int64_t, and a corrupt stamp must not be undefined. */
static int64_t stamp_of(const char *p) {
    uint64_t value = 0;
    for (int i = 0; i < STAMP_DIGITS; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        value = value * 10 + (uint64_t)(p[i] - '0');
    }
    return value > INT64_MAX ? -1 : (int64_t)value;
}

static void keep_stamp(struct stamps *k, int64_t ns) {
    if (k->n == k->cap) { /* doubling: a run's million lines cost about twenty reallocs */
        k->cap = k->cap ? 2 * k->cap : 4096;
        k->ns = realloc(k->ns, k->cap * sizeof *k->ns);
        if (!k->ns) {
            perror("c_loadgen: realloc");
            exit(1);
        }
    }
    k->ns[k->n++] = ns;
}

static int seen(const struct check *c, size_t bit) { return c->seen[bit / 64] >> bit % 64 & 1; }

static void mark_seen(struct check *c, size_t bit, size_t n) {
    for (; n && bit % 64; n--, bit++)
        c->seen[bit / 64] |= 1ULL << bit % 64;
    for (; n >= 64; n -= 64, bit += 64)
        c->seen[bit / 64] = UINT64_MAX;
    for (; n; n--, bit++)
        c->seen[bit / 64] |= 1ULL << bit % 64;
}

static void notice(struct check *c, const char *line, size_t n) {
    c->notices++;
    if (!c->name[0] && n > 11 && !memcmp(line, "* welcome, ", 11)) {
        size_t len = 0; /* "* welcome, NAME. here now: ..." */
        while (11 + len < n && line[11 + len] != ' ' && line[11 + len] != '\n' && len < MAX_NAME)
            len++;
        if (len && line[11 + len - 1] == '.')
            len--;
        memcpy(c->name, line + 11, len);
        c->name[len] = 0;
    }
    if (c->token && memmem(line, n, c->token, strlen(c->token)))
        c->token = NULL;
}

/* The sender and seq of the load line at `line`, or -1 when there is none that parses. */
static long sender_of(const struct check *c, const char *line, const char *end, long *seq) {
    size_t room = (size_t)(end - line);
    const char *mark = memchr(line, '~', room < MAX_NAME + 3 ? room : MAX_NAME + 3);
    if (!mark || end - mark < 16 || mark[1] != 'L' || mark[7] != ':' || mark[15] != ':')
        return -1;
    long s = digits(mark + 2, 5);
    *seq = digits(mark + 8, 7);
    if (s < 0 || s >= c->senders || *seq < 0 || *seq >= c->lines || !c->from ||
        *seq >= c->from[s].count || (size_t)(mark - line) != c->from[s].prefix_len)
        return -1;
    return s;
}

/* Lines new to this receiver, at memcmp speed: the bytes accepted from `line` on (0: none). */
static size_t run(struct check *c, const char *line, const char *end) {
    long q, s = sender_of(c, line, end, &q);
    if (s < 0 || s == c->self || q < c->next[s])
        return 0; /* not the start of a run of new lines: the slow path judges it */
    const struct sender *from = &c->from[s];
    const char *want = from->forwarded + (size_t)q * from->width;
    size_t most = (size_t)(end - line) / from->width, left = (size_t)(c->lines - q);
    most = most < left ? most : left;
    size_t good = 0, step = 1;
    int growing = 1;
    while (step && good < most) {
        size_t take = step < most - good ? step : most - good;
        if (!memcmp(line + good * from->width, want + good * from->width, take * from->width)) {
            good += take;
            step = growing ? step * 2 : step / 2;
        } else {
            growing = 0;
            step = take / 2;
        }
    }
    if (good) { /* all new: every bit from next[s] on is clear */
        mark_seen(c, (size_t)s * (size_t)c->lines + (size_t)q, good);
        c->load += (long)good;
        c->unique += (long)good;
        c->next[s] = (int)(q + (long)good);
    }
    return good * from->width;
}

/* The line of `n` bytes is `want` byte for byte; in a steady run, but for its send time,
   which must be digits and is returned in *stamp. */
static int same_line(const struct check *c, const char *line, const char *want, size_t prefix_len,
                     size_t n, int64_t *stamp) {
    if (!c->stamps)
        return !memcmp(line, want, n);
    size_t at = prefix_len + STAMP_AT, after = at + STAMP_DIGITS;
    *stamp = stamp_of(line + at);
    return *stamp >= 0 && !memcmp(line, want, at) && !memcmp(line + after, want + after, n - after);
}

/* One whole line, its newline included, judged alone. */
static void check_line(struct check *c, const char *line, size_t n) {
    if (n >= 2 && line[0] == '*' && line[1] == ' ') {
        notice(c, line, n);
        return;
    }
    if (!memmem(line, n, "~L", 2)) {
        c->malformed++; /* nothing but load lines and notices comes during a fan-out */
        return;
    }
    c->load++;
    long q, s = sender_of(c, line, line + n, &q);
    const struct sender *from = s >= 0 ? &c->from[s] : NULL;
    int64_t stamp = 0;
    if (!from || n != from->width ||
        !same_line(c, line, from->forwarded + (size_t)q * from->width, from->prefix_len, n,
                   &stamp)) {
        c->malformed++; /* cut, run into another, altered, or under the wrong name */
        return;
    }
    if (c->stamps) /* every line that came whole, as harness/load.py times them */
        keep_stamp(c->stamps, stamp);
    size_t bit = (size_t)s * (size_t)c->lines + (size_t)q;
    if (s == c->self)
        c->own++;
    else if (seen(c, bit))
        c->duplicated++;
    else {
        mark_seen(c, bit, 1);
        c->unique++;
        if (q < c->next[s])
            c->reordered++; /* a later line of that sender came first */
        else
            c->next[s] = (int)q + 1;
    }
}

static void check_lines(struct check *c, const char *p, const char *end) {
    /* `end` follows a newline, so every line here is whole. */
    while (p < end) {
        size_t took = c->stamps ? 0 : run(c, p, end); /* stamped lines differ: one by one */
        if (took) {
            p += took;
            continue;
        }
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        check_line(c, p, (size_t)(nl - p) + 1);
        p = nl + 1;
    }
}

/* Bytes as they arrive, split anywhere: whole lines are checked, the rest waits. */
static void check_feed(struct check *c, const char *data, size_t n) {
    const char *end = data + n;
    if (c->tail_len || c->tail_overflow) { /* first, the line begun in an earlier read */
        const char *nl = memchr(data, '\n', n);
        size_t take = nl ? (size_t)(nl - data) + 1 : n;
        if (c->tail_overflow || c->tail_len + take > sizeof c->tail) {
            c->tail_overflow = 1; /* longer than any line expected: malformed, whatever it is */
            c->tail_len = 0;
        } else {
            memcpy(c->tail + c->tail_len, data, take);
            c->tail_len += take;
        }
        if (!nl)
            return;
        if (c->tail_overflow)
            c->malformed++;
        else
            check_line(c, c->tail, c->tail_len);
        c->tail_len = 0;
        c->tail_overflow = 0;
        data = nl + 1;
    }
    const char *last = data < end ? memrchr(data, '\n', (size_t)(end - data)) : NULL;
    if (last) {
        check_lines(c, data, last + 1);
        data = last + 1;
    }
    size_t rest = (size_t)(end - data);
    if (rest > sizeof c->tail)
        c->tail_overflow = 1;
    else if (rest) {
        memcpy(c->tail, data, rest);
        c->tail_len = rest;
    }
}

static long check_missing(const struct check *c) {
    return (long)(c->senders - 1) * c->lines - c->unique;
}

/* ------------------------------------------------------------------ self-test */

#define ST_SENDERS 3
#define ST_LINES 64
#define ST_RUN 16   /* lines of one sender in a row, as a server forwards a read */
#define ST_FAULT 37 /* the line of sender 1 that the fault is at: deep in a run */

struct stream {
    char data[ST_SENDERS * ST_LINES * (LINE_SIZE + MAX_NAME + 3) * 2 + 256];
    size_t len;
};

static void put(struct stream *out, const char *bytes, size_t n) {
    memcpy(out->data + out->len, bytes, n);
    out->len += n;
}

static void put_line(struct stream *out, const struct sender *from, int seq) {
    put(out, from->forwarded + (size_t)seq * from->width, from->width);
}

enum fault { NONE, DROP, DUPLICATE, SWAP, ALTER, TRUNCATE, OWN, WRONG_NAME, BAD_STAMP };

/* What receiver 0 gets from senders 1 and 2, ST_RUN lines of one then of the other,
   with one fault at line ST_FAULT of sender 1; its welcome and a notice come along. */
static void build(struct stream *out, const struct sender *from, enum fault fault) {
    static const char welcome[] = "* welcome, guest-1. here now: a relay.\n";
    static const char joined[] = "* guest-9 joined\n";
    out->len = 0;
    put(out, welcome, sizeof welcome - 1);
    for (int q = 0; q < ST_LINES; q += ST_RUN) {
        for (int s = 1; s < ST_SENDERS; s++) {
            for (int k = q; k < q + ST_RUN; k++) {
                if (s != 1 || k != ST_FAULT) {
                    put_line(out, &from[s], k);
                    continue;
                }
                switch (fault) {
                case NONE:
                    put_line(out, &from[s], k);
                    break;
                case DROP:
                    break;
                case DUPLICATE:
                    put_line(out, &from[s], k);
                    put_line(out, &from[s], k);
                    break;
                case SWAP: /* the next line first */
                    put_line(out, &from[s], k + 1);
                    put_line(out, &from[s], k);
                    k++;
                    break;
                case ALTER:
                    put_line(out, &from[s], k);
                    out->data[out->len - 5] = '#';
                    break;
                case TRUNCATE: /* its end lost: it runs into the next line */
                    put_line(out, &from[s], k);
                    out->len -= 10;
                    break;
                case OWN:
                    put_line(out, &from[s], k);
                    put_line(out, &from[0], k);
                    break;
                case WRONG_NAME: /* sender 1's line under sender 2's name */
                    put(out, from[2].prefix, from[2].prefix_len);
                    put(out, from[1].lines + (size_t)k * LINE_SIZE, LINE_SIZE);
                    break;
                case BAD_STAMP: /* its send time is spoilt once stamped (stamp_stream) */
                    put_line(out, &from[s], k);
                    break;
                }
            }
        }
        if (q == ST_RUN)
            put(out, joined, sizeof joined - 1);
    }
}

#define ST_STAMP 1234567890000000000LL /* the send times: this plus sender * ST_SPREAD + seq */
#define ST_SPREAD 100000

/* With `every`, as a steady run sends them: each load line's zeros replaced by a send time
   of its own (ST_STAMP + sender * ST_SPREAD + seq), and with BAD_STAMP a letter in that of
   line ST_FAULT of sender 1. Without: that line alone gets a send time, all digits, where a
   fan-out expects zeros. */
static void stamp_stream(struct stream *out, enum fault fault, int every) {
    char *p = out->data, *end = out->data + out->len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *mark = memmem(p, (size_t)(nl - p), "~L", 2);
        if (mark && nl - mark >= STAMP_AT + STAMP_DIGITS) {
            long s = digits(mark + 2, 5), q = digits(mark + 8, 7);
            int faulty = fault == BAD_STAMP && s == 1 && q == ST_FAULT;
            char text[STAMP_DIGITS + 1];
            snprintf(text, sizeof text, "%019lld", ST_STAMP + s * ST_SPREAD + q);
            if (every || faulty)
                memcpy(mark + STAMP_AT, text, STAMP_DIGITS);
            if (every && faulty)
                mark[STAMP_AT + 7] = 'x';
        }
        p = nl + 1;
    }
}

/* The stamps kept are those written: one per line that came whole, each where it belongs. */
static int stamps_ok(const struct check *c, const struct stamps *k) {
    if ((long)k->n != c->load - c->malformed)
        return 0;
    for (size_t i = 0; i < k->n; i++) {
        int64_t off = k->ns[i] - ST_STAMP;
        if (off < 0 || off / ST_SPREAD >= ST_SENDERS || off % ST_SPREAD >= ST_LINES)
            return 0;
    }
    return k->n && k->ns[0] == ST_STAMP + ST_SPREAD; /* the first line: sender 1's line 0 */
}

struct expect {
    const char *what;
    enum fault fault;
    size_t chunk; /* bytes fed at once: 0 for all at once */
    long missing, duplicated, reordered, malformed, own;
    int stamped; /* as a steady run sends them: each line with its send time */
};

static int self_test(void) {
    struct sender from[ST_SENDERS];
    for (int s = 0; s < ST_SENDERS; s++) {
        char name[16];
        snprintf(name, sizeof name, "guest-%d", s == 2 ? 10 : s + 1); /* names of two widths */
        sender_init(&from[s], s, name, ST_LINES);
    }
    static const struct expect cases[] = {
        {"clean, fed whole", NONE, 0, 0, 0, 0, 0, 0, 0},
        {"clean, fed a byte at a time", NONE, 1, 0, 0, 0, 0, 0, 0},
        {"clean, fed 100 bytes at a time", NONE, 100, 0, 0, 0, 0, 0, 0},
        {"a line lost", DROP, 0, 1, 0, 0, 0, 0, 0},
        {"a line lost, fed 13 bytes at a time", DROP, 13, 1, 0, 0, 0, 0, 0},
        {"a line duplicated", DUPLICATE, 0, 0, 1, 0, 0, 0, 0},
        {"a line duplicated, fed a byte at a time", DUPLICATE, 1, 0, 1, 0, 0, 0, 0},
        {"two lines swapped", SWAP, 0, 0, 0, 1, 0, 0, 0},
        {"two lines swapped, fed a byte at a time", SWAP, 1, 0, 0, 1, 0, 0, 0},
        {"a byte altered", ALTER, 0, 1, 0, 0, 1, 0, 0},
        {"a line cut short, run into the next", TRUNCATE, 0, 2, 0, 0, 1, 0, 0},
        {"its own line", OWN, 0, 0, 0, 0, 0, 1, 0},
        {"a line under another sender's name", WRONG_NAME, 0, 1, 0, 0, 1, 0, 0},
        {"stamped, clean, fed whole", NONE, 0, 0, 0, 0, 0, 0, 1},
        {"stamped, clean, fed 7 bytes at a time", NONE, 7, 0, 0, 0, 0, 0, 1},
        {"stamped, a line lost", DROP, 0, 1, 0, 0, 0, 0, 1},
        {"stamped, a line duplicated", DUPLICATE, 0, 0, 1, 0, 0, 0, 1},
        {"stamped, two lines swapped", SWAP, 0, 0, 0, 1, 0, 0, 1},
        {"stamped, a byte altered", ALTER, 0, 1, 0, 0, 1, 0, 1},
        {"stamped, its own line", OWN, 0, 0, 0, 0, 0, 1, 1},
        {"stamped, a line under another sender's name", WRONG_NAME, 0, 1, 0, 0, 1, 0, 1},
        {"stamped, a send time not all digits", BAD_STAMP, 0, 1, 0, 0, 1, 0, 1},
        {"a send time where zeros are expected, unstamped", BAD_STAMP, 0, 1, 0, 0, 1, 0, 0},
    };
    static struct stream stream;
    int failed = 0, n = (int)(sizeof cases / sizeof cases[0]);
    for (int i = 0; i < n; i++) {
        const struct expect *e = &cases[i];
        build(&stream, from, e->fault);
        struct check c;
        check_init(&c, 0, ST_SENDERS, ST_LINES);
        c.from = from;
        c.token = "guest-9 joined";
        struct stamps kept = {0};
        if (e->stamped)
            c.stamps = &kept;
        if (e->stamped || e->fault == BAD_STAMP)
            stamp_stream(&stream, e->fault, e->stamped);
        size_t chunk = e->chunk ? e->chunk : stream.len;
        for (size_t at = 0; at < stream.len; at += chunk)
            check_feed(&c, stream.data + at, at + chunk < stream.len ? chunk : stream.len - at);
        int ok = check_missing(&c) == e->missing && c.duplicated == e->duplicated &&
                 c.reordered == e->reordered && c.malformed == e->malformed && c.own == e->own &&
                 !strcmp(c.name, "guest-1") && c.token == NULL && c.notices == 2 &&
                 !c.tail_len && (!e->stamped || stamps_ok(&c, &kept));
        printf("%s: %s (missing %ld, duplicated %ld, reordered %ld, malformed %ld, own %ld)\n",
               ok ? "ok" : "FAILED", e->what, check_missing(&c), c.duplicated, c.reordered,
               c.malformed, c.own);
        failed += !ok;
        free(c.seen);
        free(c.next);
        free(kept.ns);
    }
    for (int s = 0; s < ST_SENDERS; s++) {
        free(from[s].lines);
        free(from[s].forwarded);
    }
    printf("self-test: %d cases, %s\n", n, failed ? "FAILED" : "all ok");
    return failed ? 1 : 0;
}
