/* The C relay: the fastest relay we know how to write, to measure the chat servers against.

   Not a chat server. It speaks what the load generators need and nothing more, exactly
   as bench/plain_relay.py does on the wire: a welcome line, `NAME: ` before every line it
   forwards, an error line for any command (the generators sync with one), `listening on
   HOST:PORT` on stdout. It announces no joins or leaves.

       epoll_wait --readable--> recv up to 64 KiB --> whole lines, NAME: before each,
            ^                   (every readable      gathered into the round's buffer
            |                    client in turn)       |  end of the round: one write
            |                                          v
            |                   the log (a memfd): every round's bytes, once, in order
            |                                          |
            |                   each client: its ranges of the log, in order (every
            |                   block of the round but its own), sent with sendfile()
            +--writable (EPOLLOUT)-- a range its socket did not take waits, and goes out
                                     before anything newer

   Why a log and sendfile: the server's CPU goes mostly to the kernel copying each
   send()'s bytes into its socket buffers, once per reader: a line to 49 readers is
   copied 49 times. Written once into a memfd, the bytes are in pages the kernel can
   hand to every socket by reference (sendfile from a file copies nothing), so a line
   is copied once however many read it. And gathering a whole epoll round first means a
   reader's share of it is at most two ranges (before and after its own block): two
   calls per reader per round, not one per reader per read.

   The log is only ever appended to: a page once sent is never written again, because a
   socket may still hold it. Behind the oldest range any client still waits for, the
   log's pages are punched out (whole 2 MiB-aligned spans, so no page is ever cut in
   part: that would zero bytes a socket still holds); a socket that holds one keeps it
   alive until its bytes are read.

   One thread, non-blocking sockets, no locks, no limits: a client that never reads
   makes the log grow without bound (the chat servers' rules exist for that; this has
   none). It does what no server writing with send() can: it copies a line once, not once
   per reader (the chat servers do the same for a big block: docs/delivery.md, rule 2).
   Going faster than every Python server through the same load generator,
   it shows that the generator is not what limits them.

   Build: cc -O2 -Wall -Wextra -o c_relay c_relay.c   (bench/native.py does it)
   Run:   ./c_relay --port 0 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RECV_SIZE (64 * 1024) /* bytes read at once: what the Python servers read too */
#define MAX_EVENTS 256
#define ROUND_LIMIT (4 * 1024 * 1024) /* bytes a round gathers before it is sent anyway */
/* Each socket's send buffer: a few of loopback's 64 KiB segments (Linux doubles it). On
   loopback, what a socket holds beyond its reader's window is sent when the reader's ACK
   comes, on the reader's CPU: a relay faster than its readers, holding megabytes in its
   sockets as autotuning allows, makes the load generator do its sending for it. A small
   buffer keeps what waits in the relay's own ranges, sent on the relay's CPU when EPOLLOUT
   says so. A buffer of one segment or less (32 KiB, doubled) was far slower still. */
#define SEND_BUFFER (128 * 1024)
#define PUNCH_SPAN (2 * 1024 * 1024)  /* the log is freed in whole spans of this (a huge page) */
#define ACCEPT_BACKOFF_NS 100000000L /* 0.1 s: out of descriptors, wait rather than spin */

struct buffer {
    char *data;
    size_t len, cap;
};

struct range {
    off_t offset; /* in the log */
    size_t len;
};

struct client {
    int fd;
    uint32_t generation; /* told apart from a later client on the same descriptor */
    size_t slot;         /* where it sits in `members` */
    char prefix[32];     /* "guest-N: " */
    size_t prefix_len;
    struct buffer in;     /* the start of a line whose newline has not come */
    struct range *ranges; /* what its socket has not taken yet: ranges[head .. n_ranges) */
    size_t head, n_ranges, ranges_cap;
    int writing; /* EPOLLOUT is armed */
    int full;    /* its socket took less than offered: no send until EPOLLOUT says so */
    int gone;    /* a send failed: nothing more is sent; its read will drop it */
};

/* A piece of the round: bytes of `gathered` and who gets them. A client's ranges follow
   the pieces' order, so it sees the lines in the order they were read. Clients are named
   by generation, not pointer: one dropped during the round leaves pieces behind. */
struct piece {
    size_t offset, len;
    uint32_t from; /* everyone but this client gets it ... */
    uint32_t to;   /* ... unless this is set (a reply, a welcome): then this client alone */
};

static struct client **by_fd; /* descriptor -> client; NULL when none */
static size_t by_fd_cap;
static struct client **members;
static size_t n_members, members_cap;
static uint32_t generations;
static unsigned long long guests;
static int epfd;
static struct buffer gathered; /* this round's bytes, prefixed, before they go to the log */
static struct piece *pieces;
static size_t n_pieces, pieces_cap;
static int log_fd;        /* the log: a memfd, appended to, freed behind the oldest range */
static off_t log_end;     /* bytes ever written to it */
static off_t log_punched; /* bytes before this are freed */

static void *grow(void *p, size_t *cap, size_t need, size_t size) {
    if (need <= *cap)
        return p;
    size_t cap2 = *cap ? *cap : 16;
    while (cap2 < need)
        cap2 *= 2;
    p = realloc(p, cap2 * size);
    if (!p) {
        perror("c_relay: realloc");
        exit(1);
    }
    *cap = cap2;
    return p;
}

static void watch(struct client *c, int writing) {
    struct epoll_event ev = {.events = EPOLLIN | (writing ? EPOLLOUT : 0)};
    ev.data.u64 = (uint64_t)c->generation << 32 | (uint32_t)c->fd;
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->writing = writing;
}

static void drop(struct client *c) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    by_fd[c->fd] = NULL;
    members[c->slot] = members[--n_members]; /* order among recipients does not matter */
    members[c->slot]->slot = c->slot;
    free(c->in.data);
    free(c->ranges);
    free(c);
}

/* Add `n` bytes to the round, for everyone but `from` (to 0) or for `to` alone. */
static void add_piece(uint32_t from, uint32_t to, size_t offset, size_t n) {
    pieces = grow(pieces, &pieces_cap, n_pieces + 1, sizeof *pieces);
    pieces[n_pieces++] = (struct piece){.offset = offset, .len = n, .from = from, .to = to};
}

static void say_to(struct client *c, const char *data, size_t n) {
    gathered.data = grow(gathered.data, &gathered.cap, gathered.len + n, 1);
    memcpy(gathered.data + gathered.len, data, n);
    add_piece(0, c->generation, gathered.len, n);
    gathered.len += n;
}

/* Whole lines, NAME: before every one (the C of bytes.replace), into the round once for
   all recipients. */
static void forward(struct client *from, const char *block, size_t n) {
    size_t offset = gathered.len;
    for (const char *p = block, *end = block + n; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t line = (size_t)(nl - p + 1);
        size_t need = gathered.len + from->prefix_len + line;
        gathered.data = grow(gathered.data, &gathered.cap, need, 1);
        memcpy(gathered.data + gathered.len, from->prefix, from->prefix_len);
        memcpy(gathered.data + gathered.len + from->prefix_len, p, line);
        gathered.len += from->prefix_len + line;
        p = nl + 1;
    }
    add_piece(from->generation, 0, offset, gathered.len - offset);
}

static void queue(struct client *c, off_t offset, size_t len) {
    if (c->n_ranges > c->head) { /* right after the last one: one range, one sendfile */
        struct range *last = &c->ranges[c->n_ranges - 1];
        if (last->offset + (off_t)last->len == offset) {
            last->len += len;
            return;
        }
    }
    if (c->head && c->n_ranges == c->ranges_cap) { /* compact before growing */
        memmove(c->ranges, c->ranges + c->head, (c->n_ranges - c->head) * sizeof *c->ranges);
        c->n_ranges -= c->head;
        c->head = 0;
    }
    c->ranges = grow(c->ranges, &c->ranges_cap, c->n_ranges + 1, sizeof *c->ranges);
    c->ranges[c->n_ranges++] = (struct range){offset, len};
}

/* Send what waits, oldest first, until the socket takes less than offered. A peer that
   is gone gets nothing more: its own read sees the EOF or the reset, and drops it. */
static void send_pending(struct client *c) {
    while (!c->full && c->head < c->n_ranges) {
        struct range *r = &c->ranges[c->head];
        off_t at = r->offset;
        ssize_t sent = sendfile(c->fd, log_fd, &at, r->len);
        if (sent < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                c->gone = 1;
                c->head = c->n_ranges = 0;
                break;
            }
            sent = 0;
        }
        r->offset += sent;
        r->len -= (size_t)sent;
        if (r->len)
            c->full = 1;
        else
            c->head++;
    }
    if (c->head == c->n_ranges)
        c->head = c->n_ranges = 0;
    if ((c->n_ranges > 0) != c->writing)
        watch(c, c->n_ranges > 0);
}

/* The end of a round: its bytes go into the log in one write, every client gets its
   share as ranges of it, and the log is freed behind the oldest range still waiting. */
static void send_all(void) {
    for (size_t done = 0; done < gathered.len;) {
        ssize_t wrote = pwrite(log_fd, gathered.data + done, gathered.len - done,
                               log_end + (off_t)done);
        if (wrote < 0) {
            perror("c_relay: writing the log");
            exit(1);
        }
        done += (size_t)wrote;
    }
    off_t oldest = log_end + (off_t)gathered.len;
    for (size_t i = 0; i < n_members; i++) {
        struct client *c = members[i];
        if (c->gone)
            continue;
        for (size_t j = 0; j < n_pieces; j++) {
            const struct piece *p = &pieces[j];
            if (p->to ? p->to == c->generation : p->from != c->generation)
                queue(c, log_end + (off_t)p->offset, p->len);
        }
        send_pending(c);
        if (c->head < c->n_ranges && c->ranges[c->head].offset < oldest)
            oldest = c->ranges[c->head].offset;
    }
    log_end += (off_t)gathered.len;
    gathered.len = n_pieces = 0;
    off_t free_to = oldest / PUNCH_SPAN * PUNCH_SPAN;
    if (free_to > log_punched) {
        fallocate(log_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, log_punched,
                  free_to - log_punched);
        log_punched = free_to;
    }
}

static void answer_commands(struct client *c, const char *block, size_t n) {
    /* The slow path, for the rare read that holds a command: answer each, forward the rest
       (the reply goes to the sender alone, which gets none of its own lines: no order to keep). */
    const char *run = block;
    for (const char *p = block, *end = block + n; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (*p == '/') {
            if (p > run)
                forward(c, run, (size_t)(p - run));
            size_t word = strcspn(p, " \t\r\n");
            char reply[128];
            int len = snprintf(reply, sizeof reply, "* error: unknown command %.*s\n",
                               (int)(word < 64 ? word : 64), p);
            say_to(c, reply, (size_t)len);
            run = nl + 1;
        }
        p = nl + 1;
    }
    if (run < block + n)
        forward(c, run, (size_t)(block + n - run));
}

static void readable(struct client *c) {
    struct buffer *in = &c->in;
    in->data = grow(in->data, &in->cap, in->len + RECV_SIZE, 1);
    ssize_t got = recv(c->fd, in->data + in->len, RECV_SIZE, 0);
    if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (got <= 0) {
        drop(c);
        return;
    }
    size_t old = in->len;
    in->len += (size_t)got;
    char *last = memrchr(in->data + old, '\n', (size_t)got);
    if (!last)
        return;
    size_t end = (size_t)(last - in->data) + 1;
    if (in->data[0] == '/' || memmem(in->data, end, "\n/", 2))
        answer_commands(c, in->data, end);
    else
        forward(c, in->data, end);
    memmove(in->data, in->data + end, in->len - end);
    in->len -= end;
}

static void join(int fd) {
    int one = 1;
    /* Lines go out at once: Nagle would hold a small write until the last one is acked. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int send_buffer = SEND_BUFFER;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &send_buffer, sizeof send_buffer);
    struct client *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return;
    }
    c->fd = fd;
    c->generation = ++generations;
    unsigned long long number = ++guests;
    c->prefix_len = (size_t)snprintf(c->prefix, sizeof c->prefix, "guest-%llu: ", number);
    size_t old_cap = by_fd_cap;
    by_fd = grow(by_fd, &by_fd_cap, (size_t)fd + 1, sizeof *by_fd);
    memset(by_fd + old_cap, 0, (by_fd_cap - old_cap) * sizeof *by_fd); /* realloc's are not */
    by_fd[fd] = c;
    members = grow(members, &members_cap, n_members + 1, sizeof *members);
    c->slot = n_members;
    members[n_members++] = c;
    struct epoll_event ev = {.events = EPOLLIN};
    ev.data.u64 = (uint64_t)c->generation << 32 | (uint32_t)fd;
    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
    char welcome[96];
    int n = snprintf(welcome, sizeof welcome, "* welcome, guest-%llu. here now: a relay.\n", number);
    say_to(c, welcome, (size_t)n); /* the round was sent before the accept: none is older */
}

static void accept_all(int listener) {
    for (;;) {
        int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            join(fd);
            continue;
        }
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            /* Capacity: the connection waits in the kernel's queue; accepting again at once
               would fail the same way, in a busy loop. */
            struct timespec pause = {0, ACCEPT_BACKOFF_NS};
            nanosleep(&pause, NULL);
        }
        return; /* EAGAIN: no more for now; anything else: a peer that gave up */
    }
}

static int listen_on(const char *host, const char *port) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE};
    struct addrinfo *found;
    int status = getaddrinfo(host, port, &hints, &found);
    if (status) {
        fprintf(stderr, "c_relay: %s:%s: %s\n", host, port, gai_strerror(status));
        exit(1);
    }
    int fd = socket(found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        bind(fd, found->ai_addr, found->ai_addrlen) || listen(fd, SOMAXCONN)) {
        fprintf(stderr, "c_relay: cannot listen on %s:%s: %s\n", host, port, strerror(errno));
        exit(1);
    }
    freeaddrinfo(found);
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
    getsockname(fd, (struct sockaddr *)&addr, &len);
    char shown[NI_MAXHOST], number[NI_MAXSERV];
    getnameinfo((struct sockaddr *)&addr, len, shown, sizeof shown, number, sizeof number,
                NI_NUMERICHOST | NI_NUMERICSERV);
    printf(addr.ss_family == AF_INET6 ? "listening on [%s]:%s\n" : "listening on %s:%s\n", shown,
           number);
    fflush(stdout);
    return fd;
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *port = "0";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--host") && i + 1 < argc)
            host = argv[++i];
        else if (!strcmp(argv[i], "--port") && i + 1 < argc)
            port = argv[++i];
        else if (!strcmp(argv[i], "-q") || !strcmp(argv[i], "--quiet"))
            ; /* accepted for parity with the Python servers: this one logs nothing anyway */
        else {
            fprintf(stderr, "usage: c_relay [--host HOST] [--port PORT] [-q]\n");
            return 2;
        }
    }
    struct rlimit limit; /* a descriptor per client */
    if (!getrlimit(RLIMIT_NOFILE, &limit) && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
    signal(SIGPIPE, SIG_IGN); /* sendfile has no MSG_NOSIGNAL: a gone peer's EPIPE is enough */
    log_fd = memfd_create("c_relay-log", MFD_CLOEXEC);
    if (log_fd < 0) {
        perror("c_relay: memfd_create");
        return 1;
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    int listener = listen_on(host, port);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = UINT64_MAX};
    epoll_ctl(epfd, EPOLL_CTL_ADD, listener, &ev);
    struct epoll_event events[MAX_EVENTS];
    for (;;) { /* until SIGTERM or SIGINT ends the process: nothing to clean up */
        int n = epoll_wait(epfd, events, MAX_EVENTS, -1);
        for (int i = 0; i < n; i++) {
            if (events[i].data.u64 == UINT64_MAX) {
                send_all(); /* so that a newcomer gets only lines read after it came */
                accept_all(listener);
                continue;
            }
            int fd = (int)(uint32_t)events[i].data.u64;
            uint32_t generation = (uint32_t)(events[i].data.u64 >> 32);
            struct client *c = (size_t)fd < by_fd_cap ? by_fd[fd] : NULL;
            if (!c || c->generation != generation)
                continue; /* dropped earlier in this round, its descriptor maybe reused */
            if (events[i].events & EPOLLOUT)
                c->full = 0; /* room again: its output goes out with the round */
            if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                readable(c);
            if (gathered.len >= ROUND_LIMIT)
                send_all();
        }
        send_all();
    }
}
