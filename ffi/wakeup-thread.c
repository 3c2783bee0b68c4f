/*
 * The daemon's wake-up thread. bun:ffi's cc (TinyCC, inside the Bun runtime) compiles this at
 * start. The thread sleeps in epoll_wait on the daemon's event sockets, writes one byte to a pipe
 * that the main thread's event loop watches, then sleeps until the main thread has drained the
 * sockets (a write to the `ack` eventfd): epoll is level-triggered, and the sockets stay
 * readable until then.
 *
 * A Worker did this before: a second JavaScript VM, about 2 MiB more of the daemon's RSS
 * (measured side by side). This thread costs its stack.
 *
 * Built with -nostdlib: TinyCC would otherwise link against libc.so, which glibc systems have
 * only with the C development files. The libc functions come in a table of pointers that the
 * caller looked up with dlsym; there are no headers either.
 */
typedef unsigned long pthread_t;

struct libc_fns {
	int (*pthread_create)(pthread_t *thread, const void *attr, void *(*start)(void *), void *arg);
	int (*pthread_join)(pthread_t thread, void **ret);
	int (*pthread_sigmask)(int how, const void *set, void *old);
	int (*epoll_wait)(int epfd, void *events, int maxevents, int timeout);
	long (*read)(int fd, void *buf, unsigned long count);
	long (*write)(int fd, const void *buf, unsigned long count);
	void *(*calloc)(unsigned long n, unsigned long size);
	void (*free)(void *p);
};

#define SIG_BLOCK 0
#define MAX_EVENTS 16
/* struct epoll_event: 12 bytes on x86-64 (packed), 16 elsewhere. */
#define EPOLL_EVENT_MAX_SIZE 16

struct wakeup {
	struct libc_fns libc;
	int ep, notify, ack, stop_fd;
	volatile int stop;
	pthread_t thread;
};

static void *wakeup_run(void *arg)
{
	struct wakeup *w = arg;
	unsigned long all_signals[16]; /* a sigset_t (128 bytes on glibc and musl) */
	char events[MAX_EVENTS * EPOLL_EVENT_MAX_SIZE];
	unsigned long long acked;
	char byte = 1;
	int i;

	/* Signals are the main thread's: Bun handles them there. */
	for (i = 0; i < 16; i++)
		all_signals[i] = ~0UL;
	w->libc.pthread_sigmask(SIG_BLOCK, all_signals, 0);

	while (!w->stop) {
		/* < 0 is EINTR (a stop and continue): the epoll fd lives until wakeup_stop returns. */
		if (w->libc.epoll_wait(w->ep, events, MAX_EVENTS, -1) <= 0)
			continue;
		if (w->stop)
			break;
		w->libc.write(w->notify, &byte, 1);
		w->libc.read(w->ack, &acked, sizeof(acked));
	}
	return 0;
}

/* Starts the thread; NULL if it could not be. stop_fd: an eventfd in the epoll set. */
struct wakeup *wakeup_start(const struct libc_fns *libc, int ep, int notify, int ack, int stop_fd)
{
	struct wakeup *w = libc->calloc(1, sizeof(*w));

	if (!w)
		return 0;
	/* Field by field: a struct copy would be a call to memcpy, which -nostdlib leaves out. */
	w->libc.pthread_create = libc->pthread_create;
	w->libc.pthread_join = libc->pthread_join;
	w->libc.pthread_sigmask = libc->pthread_sigmask;
	w->libc.epoll_wait = libc->epoll_wait;
	w->libc.read = libc->read;
	w->libc.write = libc->write;
	w->libc.calloc = libc->calloc;
	w->libc.free = libc->free;
	w->ep = ep;
	w->notify = notify;
	w->ack = ack;
	w->stop_fd = stop_fd;
	if (libc->pthread_create(&w->thread, 0, wakeup_run, w) != 0) {
		libc->free(w);
		return 0;
	}
	return w;
}

/* Ends the thread wherever it sleeps (epoll_wait or the ack) and waits for it. */
void wakeup_stop(struct wakeup *w)
{
	unsigned long long one = 1;

	w->stop = 1;
	w->libc.write(w->stop_fd, &one, sizeof(one));
	w->libc.write(w->ack, &one, sizeof(one));
	w->libc.pthread_join(w->thread, 0);
	w->libc.free(w);
}
