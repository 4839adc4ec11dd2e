/* The C relay: the fastest relay we know how to write, to measure the chat servers against.

   Not a chat server. It speaks what the load generators need and nothing more, exactly
   as bench/plain_relay.py does on the wire: a welcome line, `NAME: ` before every line it
   forwards, an error line for any command (the generators sync with one), `listening on
   HOST:PORT` on stdout. It announces no joins or leaves.

       epoll_wait --readable--> recv up to 64 KiB --> whole lines, NAME: before each,
            ^                   (every readable      appended to the round's buffer
            |                    client in turn)       |
            |                                          v  end of the round
            |                   one sendmsg per client: what waits for it, then every
            |                   block of the round but its own, as one iovec list
            |                                          |
            +--writable (EPOLLOUT)-- what a socket did not take is copied into its
                                     client's output buffer, and goes out before anything newer

   Why rounds: the server's CPU goes mostly to the kernel's cost of a send, and much of
   that is per call, not per byte. Sending each read's block to every other client costs
   a call per reader per read; gathering every block read in one epoll round and handing
   each reader all of them in one sendmsg costs a call per reader per round, and the
   kernel fills bigger packets. The blocks are prefixed once, into one buffer, and each
   reader's iovecs point into it: a byte is copied again only when a socket does not take
   it. Each reader still gets the blocks in the order they were read, so every sender's
   lines stay in order, and none of its own.

   One thread, non-blocking sockets, no locks, no limits: a client that never reads grows
   its buffer without bound (the chat servers' rules exist for that; this has none). The
   difference between this and the Python relays is the cost of Python itself, the GIL and
   a thread per client; what is left is the kernel's cost of moving the bytes.

   Build: cc -O2 -Wall -Wextra -o c_relay c_relay.c   (bench/native.py does it)
   Run:   ./c_relay --port 0 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define RECV_SIZE (64 * 1024) /* bytes read at once: what the Python servers read too */
#define MAX_EVENTS 256
#define ROUND_LIMIT (4 * 1024 * 1024) /* bytes a round gathers before it is sent anyway */
#define ACCEPT_BACKOFF_NS 100000000L /* 0.1 s: out of descriptors, wait rather than spin */
#ifndef IOV_MAX
#define IOV_MAX 1024 /* iovecs one sendmsg takes */
#endif

struct buffer {
    char *data;
    size_t start, len, cap; /* bytes data[start .. start+len) wait */
};

struct client {
    int fd;
    uint32_t generation; /* told apart from a later client on the same descriptor */
    size_t slot;         /* where it sits in `members` */
    char prefix[32];     /* "guest-N: " */
    size_t prefix_len;
    struct buffer in;  /* the start of a line whose newline has not come */
    struct buffer out; /* what its socket has not taken yet */
    int writing;       /* EPOLLOUT is armed */
    int full;          /* its socket took less than offered: no send until EPOLLOUT says so */
    int gone;          /* a send failed: nothing more is sent; its read will drop it */
};

/* A piece of the round: bytes of `gathered` and who gets them. Pieces are sent in the order
   they were made, so a reader sees the lines in the order they were read. Clients are
   named by generation, not pointer: one dropped during the round leaves pieces behind. */
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
static char *gathered; /* this round's blocks, prefixed: sent to every reader */
static size_t round_len, round_cap; /* bytes of it used, allocated */
static struct piece *pieces;
static size_t n_pieces, pieces_cap;
static struct iovec *iov; /* one reader's share of the round, built for its sendmsg */
static size_t iov_cap;

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

static void append(struct buffer *b, const char *data, size_t n) {
    if (b->start && b->start + b->len + n > b->cap) { /* compact before growing */
        memmove(b->data, b->data + b->start, b->len);
        b->start = 0;
    }
    b->data = grow(b->data, &b->cap, b->start + b->len + n, 1);
    memcpy(b->data + b->start + b->len, data, n);
    b->len += n;
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
    free(c->out.data);
    free(c);
}

/* Add `n` bytes to the round, for everyone but `from` (to 0) or for `to` alone. */
static void add_piece(uint32_t from, uint32_t to, size_t offset, size_t n) {
    pieces = grow(pieces, &pieces_cap, n_pieces + 1, sizeof *pieces);
    pieces[n_pieces++] = (struct piece){.offset = offset, .len = n, .from = from, .to = to};
}

static void say_to(struct client *c, const char *data, size_t n) {
    gathered = grow(gathered, &round_cap, round_len + n, 1);
    memcpy(gathered + round_len, data, n);
    add_piece(0, c->generation, round_len, n);
    round_len += n;
}

/* Whole lines, NAME: before every one (the C of bytes.replace), into the round once for
   all recipients. */
static void forward(struct client *from, const char *block, size_t n) {
    size_t offset = round_len;
    for (const char *p = block, *end = block + n; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t line = (size_t)(nl - p + 1);
        gathered = grow(gathered, &round_cap, round_len + from->prefix_len + line, 1);
        memcpy(gathered + round_len, from->prefix, from->prefix_len);
        memcpy(gathered + round_len + from->prefix_len, p, line);
        round_len += from->prefix_len + line;
        p = nl + 1;
    }
    add_piece(from->generation, 0, offset, round_len - offset);
}

/* What waits for `c`, then its share of the round, in one sendmsg (or as few as IOV_MAX
   allows); what the socket does not take is copied into its output buffer, to go out
   when EPOLLOUT says there is room. A peer that is gone gets nothing more: its own read
   sees the EOF or the reset, and drops it. */
static void send_round(struct client *c) {
    if (c->gone)
        return;
    size_t n = 0, waited = c->out.len;
    if (waited) {
        iov = grow(iov, &iov_cap, 1, sizeof *iov);
        iov[n++] = (struct iovec){c->out.data + c->out.start, waited};
    }
    for (size_t i = 0; i < n_pieces; i++) {
        const struct piece *p = &pieces[i];
        if (p->to ? p->to != c->generation : p->from == c->generation)
            continue;
        iov = grow(iov, &iov_cap, n + 1, sizeof *iov);
        iov[n++] = (struct iovec){gathered + p->offset, p->len};
    }
    size_t done = 0; /* iovecs the socket took whole */
    if (!c->full) {
        while (done < n) {
            size_t count = n - done < IOV_MAX ? n - done : IOV_MAX;
            struct msghdr msg = {.msg_iov = iov + done, .msg_iovlen = count};
            ssize_t sent = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
            if (sent < 0) {
                if (errno != EAGAIN && errno != EWOULDBLOCK) {
                    c->gone = 1;
                    c->out.len = c->out.start = 0;
                    if (c->writing)
                        watch(c, 0);
                    return;
                }
                sent = 0;
            }
            size_t left = (size_t)sent, stop = done + count;
            while (done < stop && left >= iov[done].iov_len)
                left -= iov[done++].iov_len;
            if (done < stop) { /* the socket is full: part of one iovec went, if any */
                iov[done].iov_base = (char *)iov[done].iov_base + left;
                iov[done].iov_len -= left;
                c->full = 1;
                break;
            }
        }
    }
    if (waited) { /* iov[0] is the output buffer itself: it loses what went */
        size_t taken = done ? waited : waited - iov[0].iov_len;
        c->out.start += taken;
        c->out.len -= taken;
        if (!c->out.len)
            c->out.start = 0;
    }
    for (size_t i = done > (waited ? 1 : 0) ? done : (waited ? 1 : 0); i < n; i++)
        append(&c->out, iov[i].iov_base, iov[i].iov_len);
    if ((c->out.len > 0) != c->writing)
        watch(c, c->out.len > 0);
}

/* The end of a round: every client gets its share, and the round starts empty. */
static void send_all(void) {
    for (size_t i = 0; i < n_members; i++)
        send_round(members[i]);
    round_len = n_pieces = 0;
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
            if (round_len >= ROUND_LIMIT)
                send_all();
        }
        send_all();
    }
}
