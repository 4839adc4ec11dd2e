/* A relay with one fault: a client that resets kills the whole server.
 *
 * It frames by lines and relays each to every other client, as it should, with a
 * plain send(). But writing to a socket whose peer has reset raises SIGPIPE, whose
 * default action ends the process: one client that vanishes (a crash, a pulled
 * cable, a killed nc) takes everyone's chat with it. MSG_NOSIGNAL on each send(),
 * or ignoring SIGPIPE once, turns that into an EPIPE error to handle. The grader's
 * `disconnects` check resets a client and finds the server dead. (It writes to all
 * under one lock: it would also freeze on a stuck reader, which its test does not
 * check.)
 *
 * Build: cc -pthread -o dies_on_reset dies_on_reset.c; run: ./dies_on_reset PORT
 */
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CLIENTS 256
#define MAX_LINE 4096

static int clients[MAX_CLIENTS];
static int count;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void relay(int from, const char *line, size_t n) {
    char out[MAX_LINE + 64];
    int len = snprintf(out, 64, "client %d: ", from);
    memcpy(out + len, line, n);
    len += n;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < count; i++)
        if (clients[i] != from)
            send(clients[i], out, len, 0); /* the fault: no MSG_NOSIGNAL (SIGPIPE kills) */
    pthread_mutex_unlock(&lock);
}

static void *serve(void *arg) {
    int fd = (int)(long)arg;
    char buf[MAX_LINE];
    size_t have = 0;
    ssize_t n;
    pthread_mutex_lock(&lock);
    clients[count++] = fd;
    pthread_mutex_unlock(&lock);
    while ((n = recv(fd, buf + have, sizeof buf - have, 0)) > 0) {
        char *start = buf, *end;
        have += n;
        while ((end = memchr(start, '\n', buf + have - start)) != NULL) {
            relay(fd, start, end - start + 1); /* the line and its newline */
            start = end + 1;
        }
        have -= start - buf;
        memmove(buf, start, have);
        if (have == sizeof buf) /* a line too long: dropped */
            have = 0;
    }
    pthread_mutex_lock(&lock);
    for (int i = 0; i < count; i++)
        if (clients[i] == fd) {
            clients[i] = clients[--count];
            break;
        }
    pthread_mutex_unlock(&lock);
    close(fd);
    return NULL;
}

int main(int argc, char **argv) {
    int one = 1, listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[argc - 1]))};
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(listener, 128) < 0) {
        perror("listen");
        return 1;
    }
    for (;;) {
        int fd = accept(listener, NULL, NULL);
        pthread_t thread;
        if (fd < 0)
            continue;
        pthread_create(&thread, NULL, serve, (void *)(long)fd);
        pthread_detach(thread);
    }
}
