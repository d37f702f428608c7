/* test_blob.c — blob.c: content-addressed files stored once in STATE/blobs and
 * hard-linked into the contexts, written durably, read back with their hash
 * checked, damaged and missing ones told apart, shared copies dropped with
 * their last context, old per-context copies shared, and leftovers swept. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "mcpfs/attach.h"
#include "mcpfs/blob.h"

static bool keep_first(void *data, const char *hex)
{
	return !strcmp(hex, (const char *)data);
}

static bool keep_none(void *data, const char *hex)
{
	(void)data;
	(void)hex;
	return false;
}

static int subdir(int fd, const char *name)
{
	mkdirat(fd, name, 0700);
	return openat(fd, name, O_RDONLY | O_DIRECTORY);
}

/* The inode of name in fd, 0 when missing; its link count in *nlink. */
static ino_t ino(int fd, const char *name, nlink_t *nlink)
{
	struct stat st;
	if (fstatat(fd, name, &st, 0) < 0) {
		if (nlink)
			*nlink = 0;
		return 0;
	}
	if (nlink)
		*nlink = st.st_nlink;
	return st.st_ino;
}

static void put_file(int fd, const char *name, const char *text)
{
	int w = openat(fd, name, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(w >= 0 && write(w, text, strlen(text)) == (ssize_t)strlen(text));
	close(w);
}

static void flip_first_byte(int fd, const char *name)
{
	int w = openat(fd, name, O_WRONLY);
	CHECK(w >= 0 && pwrite(w, "X", 1, 0) == 1);
	close(w);
}

/* One context: put, stat, get, pread, damage, sweep (as before sharing). */
static void test_one_context(struct blobs *b, int fd)
{
	const char *a = "first content", *c = "second content";
	char ha[33], hc[33], name[64];
	attach_hash(a, strlen(a), ha);
	attach_hash(c, strlen(c), hc);
	CHECK_EQ_INT(blob_stat(fd, ha, strlen(a)), -ENOENT);
	CHECK_EQ_INT(blob_put(b, fd, ha, a, strlen(a)), 0);
	CHECK_EQ_INT(blob_put(b, fd, ha, a, strlen(a)), 0); /* stored once */
	CHECK_EQ_INT(blob_put(b, fd, hc, c, strlen(c)), 0);
	CHECK_EQ_INT(blob_stat(fd, ha, strlen(a)), 0);
	CHECK_EQ_INT(blob_stat(fd, ha, 3), -EBADMSG);
	struct buf out;
	buf_init(&out, 1 << 20);
	CHECK_EQ_INT(blob_get(fd, ha, strlen(a), &out), 0);
	CHECK(out.len == strlen(a) && !memcmp(out.data, a, out.len));
	char part[6] = {0};
	CHECK_EQ_INT(blob_pread(fd, hc, part, 5, 7), 5);
	CHECK_EQ_STR(part, "conte");
	/* A blob whose bytes changed (same size) is damaged, not served. */
	snprintf(name, sizeof(name), "blob-%s", hc);
	flip_first_byte(fd, name);
	buf_reset(&out);
	CHECK_EQ_INT(blob_get(fd, hc, strlen(c), &out), -EBADMSG);
	CHECK_EQ_INT(out.len, 0);
	/* A crash's leftover .tmp, and a blob nobody keeps, are swept, and the
	 * shared copy of the latter with it. */
	int t = openat(fd, "blob-0123456789abcdef0123456789abcdef.tmp", O_CREAT | O_WRONLY, 0600);
	close(t);
	CHECK_EQ_INT(blob_sweep(b, fd, keep_first, ha), 2);
	CHECK_EQ_INT(blob_stat(fd, ha, strlen(a)), 0);
	CHECK_EQ_INT(blob_stat(fd, hc, strlen(c)), -ENOENT);
	CHECK_EQ_INT(ino(b->fd, hc, NULL), 0);
	blob_remove(b, fd, ha);
	CHECK_EQ_INT(blob_stat(fd, ha, strlen(a)), -ENOENT);
	CHECK_EQ_INT(ino(b->fd, ha, NULL), 0);
	buf_done(&out);
}

/* Two contexts: one inode; the shared copy goes with the last link. */
static void test_two_contexts(struct blobs *b, int x, int y)
{
	const char *a = "the same report";
	char h[33], name[64];
	nlink_t nl;
	attach_hash(a, strlen(a), h);
	snprintf(name, sizeof(name), "blob-%s", h);
	CHECK_EQ_INT(blob_put(b, x, h, a, strlen(a)), 0);
	CHECK_EQ_INT(blob_put(b, y, h, a, strlen(a)), 0);
	ino_t i = ino(b->fd, h, &nl);
	CHECK(i != 0 && ino(x, name, NULL) == i && ino(y, name, NULL) == i);
	CHECK_EQ_INT(nl, 3);
	blob_remove(b, x, h);
	CHECK_EQ_INT(ino(b->fd, h, &nl), i);
	CHECK_EQ_INT(nl, 2);
	struct buf out;
	buf_init(&out, 1 << 20);
	CHECK_EQ_INT(blob_get(y, h, strlen(a), &out), 0);
	blob_remove(b, y, h);
	CHECK_EQ_INT(ino(b->fd, h, NULL), 0);
	/* A damaged shared copy is not spread: the next put writes a new one,
	 * and the context holding the damaged one keeps it (reported lost). */
	CHECK_EQ_INT(blob_put(b, x, h, a, strlen(a)), 0);
	flip_first_byte(b->fd, h);
	CHECK_EQ_INT(blob_put(b, y, h, a, strlen(a)), 0);
	CHECK(ino(y, name, NULL) != ino(x, name, NULL));
	CHECK_EQ_INT(ino(y, name, NULL), ino(b->fd, h, NULL));
	buf_reset(&out);
	CHECK_EQ_INT(blob_get(y, h, strlen(a), &out), 0);
	CHECK(out.len == strlen(a) && !memcmp(out.data, a, out.len));
	buf_reset(&out);
	CHECK_EQ_INT(blob_get(x, h, strlen(a), &out), -EBADMSG);
	/* Putting it again in x replaces x's damaged copy by the good one. */
	CHECK_EQ_INT(blob_put(b, x, h, a, strlen(a)), 0);
	CHECK_EQ_INT(ino(x, name, NULL), ino(b->fd, h, &nl));
	CHECK_EQ_INT(nl, 3);
	CHECK_EQ_INT(blob_sweep(b, x, keep_none, NULL), 1);
	CHECK_EQ_INT(blob_sweep(b, y, keep_none, NULL), 1);
	CHECK_EQ_INT(ino(b->fd, h, NULL), 0);
	buf_done(&out);
}

/* Copies written by an earlier version, one per context, are shared. */
static void test_share_old_copies(struct blobs *b, int x, int y)
{
	const char *a = "old content";
	char h[33], name[64];
	nlink_t nl;
	attach_hash(a, strlen(a), h);
	snprintf(name, sizeof(name), "blob-%s", h);
	put_file(x, name, a);
	put_file(y, name, a);
	CHECK_EQ_INT(blob_share(b, x, h), 1);
	CHECK_EQ_INT(blob_share(b, x, h), 0);
	CHECK_EQ_INT(ino(b->fd, h, NULL), ino(x, name, NULL));
	CHECK_EQ_INT(blob_share(b, y, h), 1); /* y's copy gives way */
	CHECK_EQ_INT(ino(y, name, NULL), ino(x, name, &nl));
	CHECK_EQ_INT(nl, 3);
	/* A damaged shared copy is not taken in place of a context's own. */
	blob_remove(b, y, h);
	put_file(y, name, a);
	flip_first_byte(b->fd, h);
	CHECK_EQ_INT(blob_share(b, y, h), 0);
	CHECK(ino(y, name, NULL) != ino(x, name, NULL));
	CHECK_EQ_INT(blob_share(b, y, "0123456789abcdef0123456789abcdef"), -ENOENT);
	blob_remove(b, x, h);
	blob_remove(b, y, h);
	CHECK_EQ_INT(ino(b->fd, h, NULL), 0);
}

/* At start: temp files, other names and shared copies no context holds go. */
static void test_blobs_sweep(struct blobs *b, int x)
{
	const char *a = "kept", *c = "orphan";
	char ha[33], hc[33];
	attach_hash(a, strlen(a), ha);
	attach_hash(c, strlen(c), hc);
	CHECK_EQ_INT(blob_put(b, x, ha, a, strlen(a)), 0);
	put_file(b->fd, hc, c);
	put_file(b->fd, "0123456789abcdef0123456789abcdef.77.tmp", "torn");
	put_file(b->fd, "stray", "?");
	CHECK_EQ_INT(blobs_sweep(b), 3);
	CHECK(ino(b->fd, ha, NULL) != 0);
	CHECK_EQ_INT(ino(b->fd, hc, NULL), 0);
	blob_remove(b, x, ha);
	CHECK_EQ_INT(blobs_sweep(b), 0);
}

int main(void)
{
	char dir[] = "/var/tmp/mcpfs-test-blob-XXXXXX";
	if (!mkdtemp(dir))
		return 1;
	int state = open(dir, O_RDONLY | O_DIRECTORY);
	struct blobs b;
	blobs_init(&b);
	CHECK_EQ_INT(blobs_open(&b, state), 0);
	int x = subdir(state, "x"), y = subdir(state, "y");
	test_one_context(&b, x);
	test_two_contexts(&b, x, y);
	test_share_old_copies(&b, x, y);
	test_blobs_sweep(&b, x);
	close(x);
	close(y);
	unlinkat(state, "x", AT_REMOVEDIR);
	unlinkat(state, "y", AT_REMOVEDIR);
	CHECK_EQ_INT(unlinkat(state, "blobs", AT_REMOVEDIR), 0); /* nothing left */
	blobs_done(&b);
	close(state);
	rmdir(dir);
	return check_report();
}
