// The kernel matrix's workload, built static so it runs in any initramfs.
// Each mode drives a known number of kernel events and prints one line
// "<mode> <count>" that the checker compares with the agent's counters.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *what) {
  perror(what);
  exit(1);
}

// getppid through syscall(2): libc cannot cache it.
static void syscalls(long n) {
  for (long i = 0; i < n; i++)
    syscall(SYS_getppid);
  printf("syscalls %ld\n", n);
}

// n round trips of one byte between two processes over two pipes: each
// side blocks once per round trip, so at least 2n context switches.
static void pingpong(long n) {
  int a[2], b[2];
  char c = 0;
  if (pipe(a) || pipe(b))
    die("pipe");
  pid_t pid = fork();
  if (pid < 0)
    die("fork");
  if (pid == 0) {
    for (long i = 0; i < n; i++)
      if (read(a[0], &c, 1) != 1 || write(b[1], &c, 1) != 1)
        _exit(1);
    _exit(0);
  }
  for (long i = 0; i < n; i++)
    if (write(a[1], &c, 1) != 1 || read(b[0], &c, 1) != 1)
      die("pingpong");
  int st;
  waitpid(pid, &st, 0);
  printf("pingpong %ld\n", n);
}

// n synchronous 4 KiB O_DIRECT writes, each its own block request (the
// next is issued after the previous completed, so nothing merges).
static void direct(const char *path, long n) {
  int fd = open(path, O_WRONLY | O_DIRECT);
  if (fd < 0)
    die(path);
  void *buf;
  if (posix_memalign(&buf, 4096, 4096))
    die("posix_memalign");
  memset(buf, 0x5a, 4096);
  for (long i = 0; i < n; i++)
    if (pwrite(fd, buf, 4096, (off_t)(i % 1024) * 8192) != 4096)
      die("pwrite");
  close(fd);
  printf("direct %ld\n", n);
}

// n loopback TCP connections, each sending 100 bytes to the listener.
static void connects(long n) {
  int l = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof sa;
  if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof sa) || listen(l, 128) ||
      getsockname(l, (struct sockaddr *)&sa, &len))
    die("listen");
  char buf[100] = {0};
  for (long i = 0; i < n; i++) {
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (c < 0 || connect(c, (struct sockaddr *)&sa, sizeof sa))
      die("connect");
    int s = accept(l, NULL, NULL);
    if (s < 0 || write(c, buf, sizeof buf) != sizeof buf)
      die("accept/write");
    size_t got = 0;
    while (got < sizeof buf) {
      ssize_t r = read(s, buf, sizeof buf - got);
      if (r <= 0)
        die("read");
      got += (size_t)r;
    }
    close(c);
    close(s);
  }
  close(l);
  printf("connects %ld\n", n);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: workload syscalls|pingpong|connects N\n"
                    "       workload direct DEVICE N\n");
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (!strcmp(argv[1], "syscalls"))
    syscalls(atol(argv[2]));
  else if (!strcmp(argv[1], "pingpong"))
    pingpong(atol(argv[2]));
  else if (!strcmp(argv[1], "connects"))
    connects(atol(argv[2]));
  else if (!strcmp(argv[1], "direct") && argc == 4)
    direct(argv[2], atol(argv[3]));
  else {
    fprintf(stderr, "unknown mode %s\n", argv[1]);
    return 2;
  }
  return 0;
}
