/* loadclient.c: the load generator for bench/net.sh (same client for every server).
 *
 *   loadclient echo PORT SIZE CONNS SECONDS
 *       CONNS connections to 127.0.0.1:PORT; each sends a SIZE-byte message,
 *       waits until all SIZE bytes came back, sends the next one, until
 *       SECONDS have passed. Prints "bytes=<echoed bytes> messages=<n> seconds=<s>".
 *   loadclient idle PORT CONNS [request]
 *       opens CONNS connections one after the other, prints "ready", then
 *       holds them (sending nothing) until stdin is closed or it is killed.
 *       With "request", each connection first sends one HTTP request and
 *       reads its response (up to the "Hello, World!" body) before "ready".
 *
 * Connects to 127.0.0.1 only.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct conn {
    int fd;
    size_t sent, got; /* of the current message */
    const char *msg;  /* the current message */
};

/* Messages are windows into 1 MiB of pseudo-random bytes, at an offset that
 * moves with every message: no two consecutive messages are equal, as in real
 * traffic (LuaJIT interns strings, and a stream of identical messages would
 * turn its copies into comparisons with the previous one). */
#define POOL (1 << 20)

static const char *next_message(const char *pool, size_t size) {
    static size_t at;
    at = (at + 4099) % (POOL - size + 1);
    return pool + at;
}

static void die(const char *what) {
    perror(what);
    exit(1);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int dial(int port, int nonblock) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((unsigned short)port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) die("connect");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (nonblock && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) die("fcntl");
    return fd;
}

static int echo(int port, size_t size, int nconns, double seconds) {
    if (size == 0 || size > POOL) { fprintf(stderr, "size must be 1..%d\n", POOL); exit(2); }
    char *pool = malloc(POOL), *sink = malloc(size);
    if (!pool || !sink) die("malloc");
    unsigned x = 2463534242u; /* xorshift32 */
    for (size_t i = 0; i < POOL; i++) {
        x ^= x << 13; x ^= x >> 17; x ^= x << 5;
        pool[i] = (char)x;
    }

    int ep = epoll_create1(0);
    struct conn *cs = calloc((size_t)nconns, sizeof *cs);
    for (int i = 0; i < nconns; i++) {
        cs[i].fd = dial(port, 1);
        cs[i].msg = next_message(pool, size);
        struct epoll_event e = { .events = EPOLLIN | EPOLLOUT, .data.ptr = &cs[i] };
        if (epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &e) < 0) die("epoll_ctl");
    }

    unsigned long long bytes = 0, messages = 0;
    struct epoll_event evs[64];
    double t0 = now(), end = t0 + seconds;
    while (now() < end) {
        int n = epoll_wait(ep, evs, 64, 100);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if ((evs[i].events & EPOLLOUT) && c->sent < size) {
                ssize_t w = write(c->fd, c->msg + c->sent, size - c->sent);
                if (w < 0 && errno != EAGAIN) die("write");
                if (w > 0) c->sent += (size_t)w;
                if (c->sent == size) {
                    struct epoll_event e = { .events = EPOLLIN, .data.ptr = c };
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
                }
            }
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                ssize_t r = read(c->fd, sink, size);
                if (r == 0) { fprintf(stderr, "server closed a connection\n"); exit(1); }
                if (r < 0 && errno != EAGAIN) die("read");
                if (r > 0) {
                    c->got += (size_t)r;
                    bytes += (unsigned long long)r;
                }
                if (c->got >= size && c->sent == size) { /* message back: next one */
                    messages++;
                    c->got -= size; /* always 0: the server only echoes what was sent */
                    c->sent = 0;
                    c->msg = next_message(pool, size);
                    struct epoll_event e = { .events = EPOLLIN | EPOLLOUT, .data.ptr = c };
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
                }
            }
        }
    }
    double took = now() - t0;
    printf("bytes=%llu messages=%llu seconds=%.3f\n", bytes, messages, took);
    for (int i = 0; i < nconns; i++) close(cs[i].fd);
    return 0;
}

static void one_request(int fd) {
    static const char req[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: loadclient\r\n\r\n";
    if (write(fd, req, sizeof req - 1) != (ssize_t)(sizeof req - 1)) die("write");
    char buf[4096];
    size_t got = 0;
    while (got < sizeof buf - 1) {
        ssize_t n = read(fd, buf + got, sizeof buf - 1 - got);
        if (n <= 0) die("read");
        got += (size_t)n;
        buf[got] = 0;
        if (strstr(buf, "Hello, World!")) return;
    }
    die("response too long");
}

static int idle(int port, int nconns, int request) {
    int *fds = malloc(sizeof(int) * (size_t)nconns);
    for (int i = 0; i < nconns; i++) fds[i] = dial(port, 0);
    if (request)
        for (int i = 0; i < nconns; i++) one_request(fds[i]);
    printf("ready\n");
    fflush(stdout);
    char b;
    while (read(0, &b, 1) > 0) {}
    for (int i = 0; i < nconns; i++) close(fds[i]);
    return 0;
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    if (argc == 6 && strcmp(argv[1], "echo") == 0)
        return echo(atoi(argv[2]), (size_t)atol(argv[3]), atoi(argv[4]), atof(argv[5]));
    if ((argc == 4 || (argc == 5 && strcmp(argv[4], "request") == 0)) && strcmp(argv[1], "idle") == 0)
        return idle(atoi(argv[2]), atoi(argv[3]), argc == 5);
    fprintf(stderr, "usage: loadclient echo PORT SIZE CONNS SECONDS | loadclient idle PORT CONNS [request]\n");
    return 2;
}
