/* A relay with one fault: it takes one recv() for one message.
 *
 * TCP is a stream of bytes, not of messages: a line may arrive in two recv()s,
 * and two lines in one. This relay forwards each recv() as it comes, with its
 * "client N: " prefix in front, so a line that arrived in two pieces reaches the
 * others as "client 4: hel" and "client 4: lo\n", run together on one line.
 * The grader's `framing` check sends a line in two pieces and finds it broken.
 * (It writes to all under one lock: it would also freeze on a stuck reader,
 * which its test does not check.)
 *
 * Build: cc -pthread -o recv_framing recv_framing.c; run: ./recv_framing PORT
 */
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CLIENTS 256

static int clients[MAX_CLIENTS];
static int count;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void *serve(void *arg) {
    int fd = (int)(long)arg;
    char buf[4096], out[4200];
    ssize_t n;
    pthread_mutex_lock(&lock);
    clients[count++] = fd;
    pthread_mutex_unlock(&lock);
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0) {
        /* the fault: this recv()'s bytes are taken for one whole message */
        int len = snprintf(out, 64, "client %d: ", fd);
        memcpy(out + len, buf, n);
        len += n;
        pthread_mutex_lock(&lock);
        for (int i = 0; i < count; i++)
            if (clients[i] != fd)
                send(clients[i], out, len, MSG_NOSIGNAL);
        pthread_mutex_unlock(&lock);
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
