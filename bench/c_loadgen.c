/* The C load generator: harness/load.py's fan-out and steady run, fast enough not to be what
   is measured.

   One thread drives every client through epoll, as harness/load.py's Swarm does, but with
   the per-byte work in C, so that a server able to deliver tens of millions of lines a
   second is not held to what one Python thread can read and check.

       connect N clients (batches of BATCH) --> each reads its welcome: its name
       every client sends /sync-1 --> each reads up to the reply: the joins are all in
       [--handshake: print "ready", wait for a line on stdin: the caller samples the server]
       every client sends L load lines, all at once --> epoll: send what the socket takes,
           read 256 KiB at a time, check every whole line (struct check, below)
       until every receiver has every line, or QUIET seconds pass with none, or TIMEOUT
       --> one JSON line on stdout  [--handshake: then wait for stdin to close]

   A load line is harness/load.py's load_line(sender, seq): `~L%05d:%07d:%019d:` padded with
   '.' to 64 bytes, the newline included; the server forwards it as `NAME: ` + the line.
   Each receiver knows every sender's lines in advance, so it compares each line it gets
   with the one expected, byte for byte (memcmp), and keeps one bit per (sender, line):
   a line seen twice is duplicated, one that comes after a later one is reordered, one
   that is not exactly what was sent (cut, merged, altered, wrong name) is malformed, a
   receiver's own line must never come, and every line missing at the end is lost.
   `--self-test` feeds the checker streams with each of those faults and fails unless it
   counts each one; tests/test_bench_tools.py runs it.

   `--steady` is Swarm.steady instead of the fan-out, for latency in a busy room:

       connect, sync, [handshake] as above, then "go":
       the first S clients each send a line every 1/R s for D s, their ticks spread evenly
           over each period (sender i starts i/S of a period late), each tick due at
           start + k periods, not at the last tick + a period, so that lateness never adds up
       each line stamped with CLOCK_MONOTONIC ns when it is sent, in the 19 digits of the
           load line's third field; every client reads, and each line that came whole gives
           a latency: the time it was read minus its stamp
       once the senders are done, at most T s more for the last lines
       --> one JSON line: the fan-out's counts, the lines sent, p50 and p99 of every latency

   Between ticks it sleeps in epoll_wait until the next tick is due, or a socket is ready:
   never a busy wait, so its CPU is the work of reading and checking.

   Build: cc -O2 -Wall -Wextra -o c_loadgen c_loadgen.c   (bench/native.py does it)
   Run:   ./c_loadgen --port PORT --clients 50 --lines 2000
          ./c_loadgen --port PORT --clients 1000 --steady --senders 20 --rate 10 --duration 5 */

#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RECV_SIZE (256 * 1024)  /* bytes read at once: fewer recv() calls per line */
#define BATCH 200               /* connections opened at once, as harness/load.py */
#define MAX_EVENTS 256

#include "c_check.h" /* the checker: pure, no I/O, and its self-test */

/* ------------------------------------------------------------------ the network */

struct client {
    int fd;
    struct check check;
    const char *out; /* what it still has to send */
    size_t out_len;
    int writing; /* EPOLLOUT armed */
    int cut;     /* the server closed it, or it failed */
    int done;    /* counted in `finished` */
    long wanted; /* lines it must get to be finished; -1 until that is known */
};

static struct client *clients;
static int n_clients, epfd;
static long finished;         /* receivers with every line, or cut */
static double last_progress;  /* when a load line last arrived */
static char *inbuf;
static struct stamps *stamps; /* a steady run: send times, then latencies; NULL: a fan-out */

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int64_t now_ns(void) { /* the clock of the stamps: Python's time.monotonic_ns() */
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static double cpu_seconds(double *user, double *sys) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    *user = (double)u.ru_utime.tv_sec + (double)u.ru_utime.tv_usec / 1e6;
    *sys = (double)u.ru_stime.tv_sec + (double)u.ru_stime.tv_usec / 1e6;
    return *user + *sys;
}

static void fail(const char *why) {
    printf("{\"error\": \"%s\"}\n", why);
    fflush(stdout);
    exit(1);
}

static void arm(struct client *c, int writing) {
    struct epoll_event ev = {.events = EPOLLIN | (writing ? EPOLLOUT : 0)};
    ev.data.u32 = (uint32_t)(c - clients); /* which client: its index */
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->writing = writing;
}

static void lose(struct client *c) {
    if (c->cut)
        return;
    c->cut = 1;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    if (!c->done) {
        c->done = 1;
        finished++;
    }
}

static void writable(struct client *c) {
    while (c->out_len) {
        ssize_t sent = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL);
        if (sent < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                lose(c);
            break;
        }
        c->out += sent;
        c->out_len -= (size_t)sent;
    }
    if (!c->cut && (c->out_len > 0) != c->writing)
        arm(c, c->out_len > 0);
}

static void finish_if_complete(struct client *c) {
    if (c->wanted >= 0 && !c->done && c->check.unique >= c->wanted) {
        c->done = 1;
        finished++;
    }
}

static void readable(struct client *c) {
    ssize_t got = recv(c->fd, inbuf, RECV_SIZE, 0);
    if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (got <= 0) {
        lose(c);
        return;
    }
    long before = c->check.load;
    size_t timed = stamps ? stamps->n : 0;
    int64_t read_at = stamps ? now_ns() : 0; /* when they came: before the checking */
    check_feed(&c->check, inbuf, (size_t)got);
    if (stamps) /* the send times the checker just kept become latencies */
        for (size_t i = timed; i < stamps->n; i++)
            stamps->ns[i] = read_at - stamps->ns[i];
    if (c->check.load != before)
        last_progress = now();
    finish_if_complete(c);
}

/* One epoll_wait of at most `ms` milliseconds, and whatever became ready then. */
static void serve(int ms) {
    struct epoll_event events[MAX_EVENTS];
    int n = epoll_wait(epfd, events, MAX_EVENTS, ms);
    for (int i = 0; i < n; i++) {
        struct client *c = &clients[events[i].data.u32];
        if (c->cut)
            continue;
        if (events[i].events & EPOLLOUT)
            writable(c);
        if (!c->cut && events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
            readable(c);
    }
}

/* Pump the loop until `done()` or `deadline`. */
static int pump(int (*done)(void), double deadline) {
    while (!done()) {
        double left = deadline - now();
        if (left <= 0)
            return 0;
        serve(left < 0.1 ? (int)(left * 1000) + 1 : 100);
    }
    return 1;
}

static int first, last_of_batch; /* the batch being connected */
static int batch_welcomed(void) {
    for (int i = first; i < last_of_batch; i++)
        if (!clients[i].cut && !clients[i].check.name[0])
            return 0;
    return 1;
}
static int all_synced(void) {
    for (int i = 0; i < n_clients; i++)
        if (!clients[i].cut && clients[i].check.token)
            return 0;
    return 1;
}
static double quiet;
static int load_over(void) {
    return finished >= n_clients || now() - last_progress > quiet;
}

static void connect_all(struct addrinfo *to, int rcvbuf, int lines, double timeout) {
    double deadline = now() + timeout;
    for (first = 0; first < n_clients; first = last_of_batch) {
        last_of_batch = first + BATCH < n_clients ? first + BATCH : n_clients;
        for (int i = first; i < last_of_batch; i++) {
            struct client *c = &clients[i];
            c->fd = socket(to->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (c->fd < 0)
                fail("socket() failed: out of descriptors?");
            /* Before connect, so the window is that size from the handshake on; a fixed size
               gives every reader the same window (harness/load.py READER_RCVBUF says why). */
            if (rcvbuf)
                setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
            if (connect(c->fd, to->ai_addr, to->ai_addrlen) && errno != EINPROGRESS)
                fail("connect() failed");
            check_init(&c->check, i, n_clients, lines);
            c->wanted = -1;
            struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
            epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
        }
        if (!pump(batch_welcomed, deadline))
            fail("timed out waiting for the welcome lines");
        for (int i = first; i < last_of_batch; i++)
            if (clients[i].cut)
                fail("a client was closed before its welcome (refused?)");
    }
}

static int never(void) { return 0; }
static int all_in(void) { return finished >= n_clients; }

/* ------------------------------------------------------------------ what the receivers got */

struct totals {
    long delivered, expected, unique, lost, duplicated, reordered, malformed, own, disordered;
    long cut, silent;
};

/* Every receiver's counts, summed; `sent[s]`: lines sender s sent (0: it is no sender). */
static struct totals count_all(const int *sent) {
    struct totals t = {0};
    for (int i = 0; i < n_clients; i++) {
        struct check *k = &clients[i].check;
        t.delivered += k->load;
        t.expected += clients[i].wanted;
        t.unique += k->unique;
        t.duplicated += k->duplicated;
        t.reordered += k->reordered;
        t.malformed += k->malformed;
        t.own += k->own;
        t.disordered += k->duplicated || k->reordered || k->malformed || k->own;
        t.cut += clients[i].cut;
        if (!clients[i].cut)
            t.lost += clients[i].wanted - k->unique;
        for (int s = 0; s < n_clients; s++) /* a sender this receiver heard nothing from */
            if (s != i && sent[s] && !k->next[s])
                t.silent++;
    }
    return t;
}

static void print_totals(const struct totals *t) {
    printf("\"delivered\": %ld, \"expected\": %ld, \"unique\": %ld, \"lost\": %ld, "
           "\"duplicated\": %ld, \"reordered\": %ld, \"malformed\": %ld, \"own\": %ld, "
           "\"disordered\": %ld, \"cut\": %ld, \"silent\": %ld, ",
           t->delivered, t->expected, t->unique, t->lost, t->duplicated, t->reordered,
           t->malformed, t->own, t->disordered, t->cut, t->silent);
}

static void print_cpu(double cpu, double user, double sys) {
    printf("\"generator_cpu\": %.6f, \"generator_user\": %.6f, \"generator_system\": %.6f", cpu,
           user, sys);
}

/* ------------------------------------------------------------------ the fan-out */

static void fan_out(struct sender *senders, int lines, double timeout, double stall_window) {
    int *sent = allocate((size_t)n_clients * sizeof *sent);
    for (int i = 0; i < n_clients; i++) {
        sent[i] = lines;
        clients[i].wanted = (long)(n_clients - 1) * lines;
    }
    double user0, sys0, user1, sys1;
    double cpu0 = cpu_seconds(&user0, &sys0);
    double started = now();
    last_progress = started;
    for (int i = 0; i < n_clients; i++) {
        clients[i].out = senders[i].lines;
        clients[i].out_len = (size_t)lines * LINE_SIZE;
        writable(&clients[i]);
    }
    int over = pump(load_over, started + timeout);
    double elapsed = now() - started;
    double cpu = cpu_seconds(&user1, &sys1) - cpu0;
    const char *ended = finished >= n_clients ? "complete" : over ? "quiet" : "timeout";
    struct totals t = count_all(sent);
    int stalled = 0;
    if (t.unique < t.expected && !t.cut) {
        /* Incomplete, nobody cut: did the server stop, or is it slow? Wait a little. */
        long seen = 0;
        for (int i = 0; i < n_clients; i++)
            seen += clients[i].check.load;
        pump(never, now() + stall_window);
        long later = 0;
        for (int i = 0; i < n_clients; i++)
            later += clients[i].check.load;
        stalled = later == seen;
    }
    printf("{\"clients\": %d, \"lines\": %d, ", n_clients, lines);
    print_totals(&t);
    printf("\"ended\": \"%s\", \"stalled\": %s, \"elapsed\": %.6f, ", ended,
           stalled ? "true" : "false", elapsed);
    print_cpu(cpu, user1 - user0, sys1 - sys0);
    printf("}\n");
    free(sent);
}

/* ------------------------------------------------------------------ the steady run */

struct ticker {
    double offset; /* seconds from the start to its first tick: i/S of a period */
    int count;     /* the lines it sends: one per tick due before the end */
    int sent;
};

/* When each of `n` senders ticks, and how many lines each sends in `duration` seconds. */
static void tickers_init(struct ticker *ticks, int n, double rate, double duration) {
    double period = 1.0 / rate;
    for (int i = 0; i < n; i++) {
        ticks[i].offset = period * i / n;
        ticks[i].count = ticks[i].sent = 0;
        while (ticks[i].offset + ticks[i].count * period < duration)
            ticks[i].count++;
    }
}

/* Line `seq` of sender `s`, stamped now, queued behind whatever it has not sent yet: its
   lines lie back to back in s->lines, so the unsent bytes stay one run. */
static void send_stamped(struct client *c, struct sender *s, int seq) {
    char *line = s->lines + (size_t)seq * LINE_SIZE;
    char text[STAMP_DIGITS + 1];
    snprintf(text, sizeof text, "%019lld", (long long)now_ns());
    memcpy(line + STAMP_AT, text, STAMP_DIGITS);
    if (!c->out_len)
        c->out = line;
    c->out_len += LINE_SIZE;
    writable(c);
}

static int by_value(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The `q` quantile of `n` sorted values, interpolated between the two nearest, in ms: as
   Python's statistics.quantiles(method="inclusive"), which harness/results.py uses. */
static double quantile_ms(const int64_t *sorted, size_t n, double q) {
    double at = q * (double)(n - 1);
    size_t low = (size_t)at;
    double value = (double)sorted[low];
    if (low + 1 < n)
        value += (double)(sorted[low + 1] - sorted[low]) * (at - (double)low);
    return value / 1e6;
}

static void print_ms(const char *name, const int64_t *sorted, size_t n, double q) {
    if (n) /* no line came: null, which bench/c_fanout.py reads as a stall */
        printf("\"%s\": %.6f, ", name, quantile_ms(sorted, n, q));
    else
        printf("\"%s\": null, ", name);
}

static void steady(struct sender *senders, struct ticker *ticks, int n_senders, double rate,
                   double duration, double drain) {
    double period = 1.0 / rate;
    static struct stamps kept;
    stamps = &kept;
    for (int i = 0; i < n_clients; i++)
        clients[i].check.stamps = &kept;
    double user0, sys0, user1, sys1;
    double cpu0 = cpu_seconds(&user0, &sys0);
    double started = now();
    last_progress = started;
    for (;;) {
        double t = now() - started, next = 0;
        int pending = 0; /* senders with a line still to send */
        for (int i = 0; i < n_senders; i++) {
            struct ticker *k = &ticks[i];
            /* Tick k is due at offset + k periods from the start, whenever the last one went:
               a late tick is sent at once, and the next is not late for it. */
            while (k->sent < k->count && !clients[i].cut && k->offset + k->sent * period <= t)
                send_stamped(&clients[i], &senders[i], k->sent++);
            if (k->sent < k->count && !clients[i].cut) {
                double due = k->offset + k->sent * period;
                next = pending++ && next < due ? next : due;
            }
        }
        if (!pending)
            break; /* every sender has sent every line, or was cut */
        double ms = (next - t) * 1000;
        int wait = (int)ms;
        serve(wait < ms ? wait + 1 : wait); /* rounded up: woken early, it would spin */
    }
    int *sent = allocate((size_t)n_clients * sizeof *sent);
    long total = 0;
    for (int i = 0; i < n_senders; i++)
        total += sent[i] = ticks[i].sent;
    for (int i = 0; i < n_clients; i++) { /* everyone gets every line but its own */
        clients[i].wanted = total - sent[i];
        finish_if_complete(&clients[i]);
    }
    pump(all_in, now() + drain);
    double elapsed = now() - started;
    double cpu = cpu_seconds(&user1, &sys1) - cpu0;
    struct totals t = count_all(sent);
    qsort(kept.ns, kept.n, sizeof *kept.ns, by_value);
    printf("{\"clients\": %d, \"senders\": %d, \"rate\": %g, \"duration\": %g, \"sent\": %ld, ",
           n_clients, n_senders, rate, duration, total);
    print_totals(&t);
    printf("\"ended\": \"%s\", \"elapsed\": %.6f, \"timed\": %zu, ",
           finished >= n_clients ? "complete" : "drain", elapsed, kept.n);
    print_ms("p50_ms", kept.ns, kept.n, 0.5);
    print_ms("p99_ms", kept.ns, kept.n, 0.99);
    print_ms("max_ms", kept.ns, kept.n, 1.0);
    print_cpu(cpu, user1 - user0, sys1 - sys0);
    printf("}\n");
    free(sent);
}

/* ------------------------------------------------------------------ the command line */

static void usage(void) {
    fprintf(stderr,
            "usage: c_loadgen [--host HOST] --port PORT [--clients N] [--lines L]\n"
            "                 [--rcvbuf BYTES] [--timeout S] [--quiet S] [--stall-window S]\n"
            "                 [--handshake]\n"
            "       c_loadgen [--host HOST] --port PORT [--clients N] --steady [--senders S]\n"
            "                 [--rate R] [--duration D] [--drain T] [--rcvbuf BYTES]\n"
            "                 [--timeout S] [--handshake]\n"
            "       c_loadgen --self-test\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *port = NULL;
    int lines = 2000, rcvbuf = 1024 * 1024, handshake = 0, steady_run = 0, n_senders = 20;
    double timeout = 60.0, stall_window = 2.0, rate = 10.0, duration = 5.0, drain = 5.0;
    n_clients = 50;
    quiet = 10.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--self-test"))
            return self_test();
        else if (!strcmp(a, "--handshake"))
            handshake = 1;
        else if (!strcmp(a, "--steady"))
            steady_run = 1;
        else if (!v)
            usage();
        else if (!strcmp(a, "--host"))
            host = v, i++;
        else if (!strcmp(a, "--port"))
            port = v, i++;
        else if (!strcmp(a, "--clients"))
            n_clients = atoi(v), i++;
        else if (!strcmp(a, "--lines"))
            lines = atoi(v), i++;
        else if (!strcmp(a, "--rcvbuf"))
            rcvbuf = atoi(v), i++;
        else if (!strcmp(a, "--timeout"))
            timeout = atof(v), i++;
        else if (!strcmp(a, "--quiet"))
            quiet = atof(v), i++;
        else if (!strcmp(a, "--stall-window"))
            stall_window = atof(v), i++;
        else if (!strcmp(a, "--senders"))
            n_senders = atoi(v), i++;
        else if (!strcmp(a, "--rate"))
            rate = atof(v), i++;
        else if (!strcmp(a, "--duration"))
            duration = atof(v), i++;
        else if (!strcmp(a, "--drain"))
            drain = atof(v), i++;
        else
            usage();
    }
    if (!port || n_clients < 2 || n_clients > 99999)
        usage();
    struct ticker *ticks = NULL;
    if (steady_run) { /* the checker's lines per sender: the most any sender sends */
        if (n_senders < 1 || n_senders > n_clients || !(rate > 0) || !(duration > 0) ||
            duration * rate > 9999999 || drain < 0)
            usage();
        ticks = allocate((size_t)n_senders * sizeof *ticks);
        tickers_init(ticks, n_senders, rate, duration);
        lines = ticks[0].count; /* the first sender ticks first: none sends more */
    }
    if (lines < 1 || lines > 9999999)
        usage();
    struct rlimit limit; /* a descriptor per client */
    if (!getrlimit(RLIMIT_NOFILE, &limit) && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *to;
    if (getaddrinfo(host, port, &hints, &to))
        fail("cannot resolve the server's address");
    clients = calloc((size_t)n_clients, sizeof *clients);
    inbuf = malloc(RECV_SIZE);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (!clients || !inbuf || epfd < 0)
        fail("out of memory");

    connect_all(to, rcvbuf, lines, timeout);
    /* A sync: every join notice queued for a client comes before the reply to its command. */
    static const char token[] = "/sync-1";
    for (int i = 0; i < n_clients; i++) {
        clients[i].check.token = token;
        clients[i].out = "/sync-1\n";
        clients[i].out_len = 8;
        writable(&clients[i]);
    }
    if (!pump(all_synced, now() + timeout))
        fail("timed out waiting for the replies to /sync-1");
    struct sender *senders = calloc((size_t)n_clients, sizeof *senders);
    if (!senders)
        fail("out of memory");
    for (int i = 0; i < n_clients; i++) {
        if (clients[i].cut)
            fail("a client was closed before the load began");
        int count = !steady_run ? lines : i < n_senders ? ticks[i].count : 0;
        sender_init(&senders[i], i, clients[i].check.name, count);
    }
    for (int i = 0; i < n_clients; i++) {
        clients[i].check.from = senders;
        clients[i].check.notices = clients[i].check.load = clients[i].check.malformed = 0;
    }
    if (handshake) { /* the caller samples the server's counters now, and says go */
        char go[16];
        printf("ready\n");
        fflush(stdout);
        if (!fgets(go, sizeof go, stdin))
            return 1;
    }
    if (steady_run)
        steady(senders, ticks, n_senders, rate, duration, drain);
    else
        fan_out(senders, lines, timeout, stall_window);
    fflush(stdout);
    if (handshake) { /* the clients stay connected until the caller has sampled the server */
        char rest[16];
        while (fgets(rest, sizeof rest, stdin))
            ;
    }
    return 0;
}
