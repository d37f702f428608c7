/* test_blob.c — blob.c: content-addressed files written durably, read back
 * with their hash checked, damaged and missing ones told apart, and swept. */
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

int main(void)
{
	char dir[] = "/var/tmp/mcpfs-test-blob-XXXXXX";
	if (!mkdtemp(dir))
		return 1;
	int fd = open(dir, O_RDONLY | O_DIRECTORY);
	const char *a = "first content", *b = "second content";
	char ha[33], hb[33];
	attach_hash(a, strlen(a), ha);
	attach_hash(b, strlen(b), hb);
	CHECK_EQ_INT(blob_stat(fd, ha, strlen(a)), -ENOENT);
	CHECK_EQ_INT(blob_put(fd, ha, a, strlen(a)), 0);
	CHECK_EQ_INT(blob_put(fd, ha, a, strlen(a)), 0); /* stored once */
	CHECK_EQ_INT(blob_put(fd, hb, b, strlen(b)), 0);
	CHECK_EQ_INT(blob_stat(fd, ha, strlen(a)), 0);
	CHECK_EQ_INT(blob_stat(fd, ha, 3), -EBADMSG);
	struct buf out;
	buf_init(&out, 1 << 20);
	CHECK_EQ_INT(blob_get(fd, ha, strlen(a), &out), 0);
	CHECK(out.len == strlen(a) && !memcmp(out.data, a, out.len));
	char part[6] = {0};
	CHECK_EQ_INT(blob_pread(fd, hb, part, 5, 7), 5);
	CHECK_EQ_STR(part, "conte");
	/* A blob whose bytes changed (same size) is damaged, not served. */
	char name[64];
	snprintf(name, sizeof(name), "blob-%s", hb);
	int w = openat(fd, name, O_WRONLY);
	CHECK(w >= 0 && pwrite(w, "X", 1, 0) == 1);
	close(w);
	buf_reset(&out);
	CHECK_EQ_INT(blob_get(fd, hb, strlen(b), &out), -EBADMSG);
	CHECK_EQ_INT(out.len, 0);
	/* A crash's leftover .tmp, and a blob nobody keeps, are swept. */
	int t = openat(fd, "blob-0123456789abcdef0123456789abcdef.tmp", O_CREAT | O_WRONLY, 0600);
	close(t);
	CHECK_EQ_INT(blob_sweep(fd, keep_first, ha), 2);
	CHECK_EQ_INT(blob_stat(fd, ha, strlen(a)), 0);
	CHECK_EQ_INT(blob_stat(fd, hb, strlen(b)), -ENOENT);
	blob_remove(fd, ha);
	CHECK_EQ_INT(blob_stat(fd, ha, strlen(a)), -ENOENT);
	buf_done(&out);
	close(fd);
	rmdir(dir);
	return check_report();
}
