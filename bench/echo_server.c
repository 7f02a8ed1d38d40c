/* echo_server.c: the C baseline for the TCP echo benchmark (bench/net.sh).
 *
 *   echo_server PORT        listens on 127.0.0.1:PORT (0 = any), prints the port
 *
 * One thread, level-triggered epoll, non-blocking sockets, TCP_NODELAY, a
 * 64 KiB read buffer (the size lunet reads with). Every read is written back
 * at once; what the kernel does not take is kept for that connection, which
 * then stops reading until EPOLLOUT has drained it. This is what lunet does
 * with uv_try_write + a queued write, so the two servers do the same work.
 * Runs until killed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF (64 * 1024)
#define MAXEV 256

struct conn {
    int fd;
    char *held;   /* bytes the kernel did not take yet */
    size_t len, off;
};

static int ep;

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void set_events(struct conn *c, unsigned ev) {
    struct epoll_event e = { .events = ev, .data.ptr = c };
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e) < 0) die("epoll_ctl mod");
}

static void drop(struct conn *c) {
    close(c->fd); /* also removes it from the epoll set */
    free(c->held);
    free(c);
}

/* Writes as much of buf as the kernel takes; keeps the rest. 0 ok, -1 dead. */
static int send_or_hold(struct conn *c, const char *buf, size_t n) {
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(c->fd, buf + done, n - done);
        if (w > 0) { done += (size_t)w; continue; }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN) break;
        return -1;
    }
    if (done == n) return 0;
    c->held = malloc(n - done);
    if (!c->held) die("malloc");
    memcpy(c->held, buf + done, n - done);
    c->len = n - done;
    c->off = 0;
    set_events(c, EPOLLOUT);
    return 0;
}

static int flush_held(struct conn *c) {
    while (c->off < c->len) {
        ssize_t w = write(c->fd, c->held + c->off, c->len - c->off);
        if (w > 0) { c->off += (size_t)w; continue; }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN) return 0;
        return -1;
    }
    free(c->held);
    c->held = NULL;
    c->len = c->off = 0;
    set_events(c, EPOLLIN);
    return 0;
}

int main(int argc, char **argv) {
    static char buf[BUF];
    int port = argc > 1 ? atoi(argv[1]) : 0;
    signal(SIGPIPE, SIG_IGN);

    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (ls < 0) die("socket");
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((unsigned short)port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    if (listen(ls, 511) < 0) die("listen");
    socklen_t al = sizeof a;
    getsockname(ls, (struct sockaddr *)&a, &al);
    printf("listening on 127.0.0.1:%d\n", ntohs(a.sin_port));
    fflush(stdout);

    ep = epoll_create1(0);
    if (ep < 0) die("epoll_create1");
    struct epoll_event e = { .events = EPOLLIN, .data.ptr = NULL };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, ls, &e) < 0) die("epoll_ctl add listener");

    struct epoll_event evs[MAXEV];
    for (;;) {
        int n = epoll_wait(ep, evs, MAXEV, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (!c) { /* the listener */
                for (;;) {
                    int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
                    if (fd < 0) break;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    c = calloc(1, sizeof *c);
                    if (!c) die("calloc");
                    c->fd = fd;
                    struct epoll_event ce = { .events = EPOLLIN, .data.ptr = c };
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ce) < 0) die("epoll_ctl add");
                }
                continue;
            }
            if (c->held) {
                if (flush_held(c) < 0) drop(c);
                continue;
            }
            ssize_t r = read(c->fd, buf, BUF);
            if (r > 0) {
                if (send_or_hold(c, buf, (size_t)r) < 0) drop(c);
            } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                drop(c);
            }
        }
    }
}
