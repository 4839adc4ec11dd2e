/* A chat client with one fault: once its input ends, it spins and never exits.
 *
 * Two threads, as the assignment asks: the receiver prints what the server sends,
 * the main thread sends what is typed. But at the end of the input (Ctrl-D, or the
 * end of a pipe) fgets() returns NULL at once, for ever after (glibc's end of file
 * is sticky), and the main thread takes NULL for "nothing typed yet" and asks
 * again: a core at 100 %. The grader's `client_no_busy_wait` and
 * `client_exits_on_eof` checks find it.
 *
 * Build: cc -pthread -o spinning_client spinning_client.c; run: ./spinning_client HOST PORT
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int sock;

static void *receive(void *unused) {
    char buf[4096];
    ssize_t n;
    (void)unused;
    while ((n = recv(sock, buf, sizeof buf, 0)) > 0) {
        fwrite(buf, 1, n, stdout);
        fflush(stdout);
    }
    printf("server gone\n");
    exit(3);
}

int main(int argc, char **argv) {
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    char line[4096];
    pthread_t receiver;
    if (argc != 3 || inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1) {
        fprintf(stderr, "usage: %s HOST PORT\n", argv[0]);
        return 2;
    }
    sock = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(sock, (struct sockaddr *)&addr, sizeof addr) < 0) {
        perror("connect");
        return 1;
    }
    pthread_create(&receiver, NULL, receive, NULL);
    for (;;)
        if (fgets(line, sizeof line, stdin)) /* the fault: NULL at the end is not "wait" */
            send(sock, line, strlen(line), MSG_NOSIGNAL);
}
