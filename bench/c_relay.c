/* The C relay: the fastest relay we know how to write, to measure the chat servers against.

   Not a chat server. It speaks what the load generators need and nothing more, exactly
   as bench/plain_relay.py does on the wire: a welcome line, `NAME: ` before every line it
   forwards, an error line for any command (the generators sync with one), `listening on
   HOST:PORT` on stdout. It announces no joins or leaves.

       epoll_wait --readable--> recv up to 64 KiB --> whole lines, NAME: before each
            ^                                            |  one send() per other client
            |                                            v
            +--writable (EPOLLOUT)-- what a socket did not take waits in its client's
                                     output buffer, and goes out before anything newer

   One thread, non-blocking sockets, no locks, no limits: a client that never reads grows
   its buffer without bound (the chat servers' rules exist for that; this has none). The
   difference between this and the Python relays is the cost of Python itself, the GIL and
   a thread per client; what is left is the kernel's cost of moving the bytes.

   Build: cc -O2 -Wall -Wextra -o c_relay c_relay.c   (bench/native.py does it)
   Run:   ./c_relay --port 0 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
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
#include <time.h>
#include <unistd.h>

#define RECV_SIZE (64 * 1024) /* bytes read at once: what the Python servers read too */
#define MAX_EVENTS 256
#define ACCEPT_BACKOFF_NS 100000000L /* 0.1 s: out of descriptors, wait rather than spin */

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
};

static struct client **by_fd; /* descriptor -> client; NULL when none */
static size_t by_fd_cap;
static struct client **members;
static size_t n_members, members_cap;
static uint32_t generations;
static unsigned long long guests;
static int epfd;
static char *scratch; /* one read's lines with the prefixes in: built once, sent to all */
static size_t scratch_cap;

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

/* Send what waits, then as much of `data` as the socket takes now; queue the rest. A peer
   that is gone gets nothing more: its own read sees the EOF or the reset, and drops it. */
static void deliver(struct client *c, const char *data, size_t n) {
    while (c->out.len) {
        ssize_t sent = send(c->fd, c->out.data + c->out.start, c->out.len, MSG_NOSIGNAL);
        if (sent < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            c->out.len = 0; /* gone: nothing more will reach it */
            return;
        }
        c->out.start += (size_t)sent;
        c->out.len -= (size_t)sent;
        if (!c->out.len)
            c->out.start = 0;
    }
    if (!c->out.len && n) {
        ssize_t sent = send(c->fd, data, n, MSG_NOSIGNAL);
        if (sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return;
        if (sent > 0) {
            data += sent;
            n -= (size_t)sent;
        }
    }
    if (n)
        append(&c->out, data, n);
    if ((c->out.len > 0) != c->writing)
        watch(c, c->out.len > 0);
}

static void forward(struct client *from, const char *block, size_t n) {
    /* NAME: before every line, once for all recipients: the C of bytes.replace. */
    size_t lines = 0;
    for (const char *p = block; (p = memchr(p, '\n', (size_t)(block + n - p))); p++)
        lines++;
    scratch = grow(scratch, &scratch_cap, n + lines * from->prefix_len, 1);
    char *out = scratch;
    for (const char *p = block, *end = block + n; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        memcpy(out, from->prefix, from->prefix_len);
        out += from->prefix_len;
        memcpy(out, p, (size_t)(nl - p + 1));
        out += nl - p + 1;
        p = nl + 1;
    }
    for (size_t i = 0; i < n_members; i++)
        if (members[i] != from)
            deliver(members[i], scratch, (size_t)(out - scratch));
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
            deliver(c, reply, (size_t)len);
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
    deliver(c, welcome, (size_t)n);
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
                accept_all(listener);
                continue;
            }
            int fd = (int)(uint32_t)events[i].data.u64;
            uint32_t generation = (uint32_t)(events[i].data.u64 >> 32);
            struct client *c = (size_t)fd < by_fd_cap ? by_fd[fd] : NULL;
            if (!c || c->generation != generation)
                continue; /* dropped earlier in this round, its descriptor maybe reused */
            if (events[i].events & EPOLLOUT)
                deliver(c, NULL, 0);
            if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                readable(c);
        }
    }
}
