/* fs_node.c — the node table: every file a context directory holds (fs_nodes,
 * by enum fs_kind), and inode numbers to kinds and back.  Pure data and
 * arithmetic, no store and no request: the leaf every other file of src/fs
 * stands on.  Attributes are fs_attr.c, lookup and the other directory
 * operations fs_dir.c, the operations table fs_ops.c.
 */
#include <errno.h>
#include <string.h>

#include "fs_impl.h"

const struct fs_node fs_nodes[K_NFIXED] = {
    [K_DIR] = {"", 0755 | S_IFDIR, -1},
    [K_INPUT] = {"input", 0644 | S_IFREG, -1},
    [K_OUTPUT] = {"output", 0444 | S_IFREG, -1},
    [K_HISTORY] = {"history", 0444 | S_IFREG, VIEW_HISTORY},
    [K_HISTORY_JSON] = {"history.json", 0444 | S_IFREG, VIEW_HISTORY_JSON},
    [K_TRANSCRIPT] = {"transcript", 0444 | S_IFREG, VIEW_TRANSCRIPT},
    [K_SYSTEM] = {"system", 0644 | S_IFREG, VIEW_SYSTEM},
    [K_MODEL] = {"model", 0644 | S_IFREG, VIEW_MODEL},
    [K_CONFIG] = {"config", 0644 | S_IFREG, VIEW_CONFIG},
    [K_STATUS] = {"status", 0444 | S_IFREG, VIEW_STATUS},
    [K_USAGE] = {"usage", 0444 | S_IFREG, VIEW_USAGE},
    [K_CTL] = {"ctl", 0600 | S_IFREG, -1}, /* reads list the commands */
    [K_SCHEMA] = {"schema", 0644 | S_IFREG, VIEW_SCHEMA},
    [K_THINKING] = {"thinking", 0444 | S_IFREG, -1},
    [K_TRANSCRIPT_JSON] = {"transcript.json", 0444 | S_IFREG, VIEW_TRANSCRIPT_JSON},
    [K_ATTACH] = {"attach", 0755 | S_IFDIR, -1},
    [K_SUMMARY] = {"summary", 0644 | S_IFREG, VIEW_SUMMARY},
};

uint64_t fs_node_ino(uint64_t ctx, int kind)
{
	if (kind == K_ROOT)
		return FUSE_ROOT_ID;
	if (kind == K_ROOT_STATUS)
		return INO_STATUS;
	if (kind == K_ROOT_CONFIG)
		return INO_CONFIG;
	if (kind == K_ROOT_MODELS)
		return INO_MODELS;
	if (kind == K_ROOT_USAGE)
		return INO_USAGE;
	return ctx << 8 | (uint64_t)kind;
}

int fs_node_kind(fuse_ino_t ino, uint64_t *ctx)
{
	*ctx = 0;
	if (ino == FUSE_ROOT_ID)
		return K_ROOT;
	if (ino == INO_STATUS)
		return K_ROOT_STATUS;
	if (ino == INO_CONFIG)
		return K_ROOT_CONFIG;
	if (ino == INO_MODELS)
		return K_ROOT_MODELS;
	if (ino == INO_USAGE)
		return K_ROOT_USAGE;
	if (ino & INO_SCRATCH)
		return K_SCRATCH;
	if (ino & INO_ATTACH) {
		*ctx = (ino & ~INO_ATTACH) >> INO_ATTACH_SEQ_BITS;
		return K_ATTACH_FILE;
	}
	*ctx = ino >> 8;
	int kind = (int)(ino & 0xff);
	return kind < K_NFIXED && *ctx ? kind : -1;
}

int fs_node_fixed(const char *name)
{
	for (int k = 1; k < K_NFIXED; k++)
		if (!strcmp(name, fs_nodes[k].name))
			return k;
	return -1;
}
