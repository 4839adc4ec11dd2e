/* The C fan-out generator: harness/load.py's fan-out, fast enough not to be what is measured.

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

   Build: cc -O2 -Wall -Wextra -o c_loadgen c_loadgen.c   (bench/native.py does it)
   Run:   ./c_loadgen --port PORT --clients 50 --lines 2000 */

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
};

static struct client *clients;
static int n_clients, epfd;
static long finished;         /* receivers with every line, or cut */
static double last_progress;  /* when a load line last arrived */
static char *inbuf;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
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

static void readable(struct client *c, long wanted) {
    ssize_t got = recv(c->fd, inbuf, RECV_SIZE, 0);
    if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (got <= 0) {
        lose(c);
        return;
    }
    long before = c->check.load;
    check_feed(&c->check, inbuf, (size_t)got);
    if (c->check.load != before)
        last_progress = now();
    if (wanted && !c->done && c->check.unique >= wanted) {
        c->done = 1;
        finished++;
    }
}

/* Pump the loop until `done()` or `deadline`; `wanted` lines make a receiver finished. */
static int pump(int (*done)(void), double deadline, long wanted) {
    struct epoll_event events[MAX_EVENTS];
    while (!done()) {
        double left = deadline - now();
        if (left <= 0)
            return 0;
        int n = epoll_wait(epfd, events, MAX_EVENTS, left < 0.1 ? (int)(left * 1000) + 1 : 100);
        for (int i = 0; i < n; i++) {
            struct client *c = &clients[events[i].data.u32];
            if (c->cut)
                continue;
            if (events[i].events & EPOLLOUT)
                writable(c);
            if (!c->cut && events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                readable(c, wanted);
        }
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
            struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
            epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
        }
        if (!pump(batch_welcomed, deadline, 0))
            fail("timed out waiting for the welcome lines");
        for (int i = first; i < last_of_batch; i++)
            if (clients[i].cut)
                fail("a client was closed before its welcome (refused?)");
    }
}

static int never(void) { return 0; }

static void usage(void) {
    fprintf(stderr,
            "usage: c_loadgen [--host HOST] --port PORT [--clients N] [--lines L]\n"
            "                 [--rcvbuf BYTES] [--timeout S] [--quiet S] [--stall-window S]\n"
            "                 [--handshake]\n"
            "       c_loadgen --self-test\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *port = NULL;
    int lines = 2000, rcvbuf = 1024 * 1024, handshake = 0;
    double timeout = 60.0, stall_window = 2.0;
    n_clients = 50;
    quiet = 10.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--self-test"))
            return self_test();
        else if (!strcmp(a, "--handshake"))
            handshake = 1;
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
        else
            usage();
    }
    if (!port || n_clients < 2 || lines < 1 || n_clients > 99999 || lines > 9999999)
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
    if (!pump(all_synced, now() + timeout, 0))
        fail("timed out waiting for the replies to /sync-1");
    struct sender *senders = calloc((size_t)n_clients, sizeof *senders);
    if (!senders)
        fail("out of memory");
    for (int i = 0; i < n_clients; i++) {
        if (clients[i].cut)
            fail("a client was closed before the load began");
        sender_init(&senders[i], i, clients[i].check.name, lines);
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

    long wanted = (long)(n_clients - 1) * lines;
    double user0, sys0, user1, sys1;
    double cpu0 = cpu_seconds(&user0, &sys0);
    double started = now();
    last_progress = started;
    for (int i = 0; i < n_clients; i++) {
        clients[i].out = senders[i].lines;
        clients[i].out_len = (size_t)lines * LINE_SIZE;
        writable(&clients[i]);
    }
    int over = pump(load_over, started + timeout, wanted);
    double elapsed = now() - started;
    double cpu = cpu_seconds(&user1, &sys1) - cpu0;
    const char *ended = finished >= n_clients ? "complete" : over ? "quiet" : "timeout";

    long delivered = 0, unique = 0, lost = 0, duplicated = 0, reordered = 0, malformed = 0;
    long own = 0, disordered = 0, cut = 0, silent = 0;
    for (int i = 0; i < n_clients; i++) {
        struct check *k = &clients[i].check;
        delivered += k->load;
        unique += k->unique;
        duplicated += k->duplicated;
        reordered += k->reordered;
        malformed += k->malformed;
        own += k->own;
        disordered += k->duplicated || k->reordered || k->malformed || k->own;
        cut += clients[i].cut;
        if (!clients[i].cut)
            lost += check_missing(k);
        for (int s = 0; s < n_clients; s++) /* a sender this receiver heard nothing from */
            if (s != i && !k->next[s])
                silent++;
    }
    int stalled = 0;
    if (unique < wanted * n_clients && !cut) {
        /* Incomplete, nobody cut: did the server stop, or is it slow? Wait a little. */
        long seen = 0;
        for (int i = 0; i < n_clients; i++)
            seen += clients[i].check.load;
        pump(never, now() + stall_window, wanted);
        long later = 0;
        for (int i = 0; i < n_clients; i++)
            later += clients[i].check.load;
        stalled = later == seen;
    }
    printf("{\"clients\": %d, \"lines\": %d, \"delivered\": %ld, \"expected\": %ld, "
           "\"unique\": %ld, \"lost\": %ld, \"duplicated\": %ld, \"reordered\": %ld, "
           "\"malformed\": %ld, \"own\": %ld, \"disordered\": %ld, \"cut\": %ld, "
           "\"silent\": %ld, \"ended\": \"%s\", \"stalled\": %s, \"elapsed\": %.6f, "
           "\"generator_cpu\": %.6f, \"generator_user\": %.6f, \"generator_system\": %.6f}\n",
           n_clients, lines, delivered, wanted * n_clients, unique, lost, duplicated, reordered,
           malformed, own, disordered, cut, silent, ended, stalled ? "true" : "false", elapsed,
           cpu, user1 - user0, sys1 - sys0);
    fflush(stdout);
    if (handshake) { /* the clients stay connected until the caller has sampled the server */
        char rest[16];
        while (fgets(rest, sizeof rest, stdin))
            ;
    }
    return 0;
}

