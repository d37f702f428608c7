/* names.c — what a context may be called (store_name_check, see store.h).
 *
 * Kept apart from the store so the rule can be tested, and used by the FUSE
 * adapter and the HTTP shim, without a state directory.  A name becomes a
 * directory name on disk and a path component in the mount, hence no '/' and
 * the 255-byte limit of NAME_MAX; a leading '.' is reserved for the daemon's
 * own files (.status, .config) and for editors' scratch files.
 */
#include <errno.h>

#include "mcpfs/store.h"
#include "mcpfs/utf8.h"

int store_name_check(const char *name, size_t len)
{
	return store_name_check_why(name, len, NULL);
}

int store_name_check_why(const char *name, size_t len, const char **why)
{
	const char *dummy;
	if (!why)
		why = &dummy;
	*why = NULL;
	if (len == 0) {
		*why = "a name has 1 to 255 bytes";
		return -EINVAL;
	}
	/* Before the UTF-8 check: an over-long name is ENAMETOOLONG whatever it holds. */
	if (len > STORE_NAME_MAX) {
		*why = "longer than 255 bytes";
		return -ENAMETOOLONG;
	}
	if (name[0] == '.') {
		*why = "names that start with '.' are reserved";
		return -EINVAL;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		/* Control bytes (NUL included) would garble `ls`, terminals and
		 * the line-based files that show names. */
		if (c == '/' || c < 0x20 || c == 0x7F) {
			*why = c == '/' ? "a name cannot hold '/'"
					: "a name cannot hold control characters";
			return -EINVAL;
		}
	}
	/* The contract says EINVAL here, not the EILSEQ used for message text. */
	if (!utf8_valid(name, len)) {
		*why = "a name must be valid UTF-8";
		return -EINVAL;
	}
	return 0;
}
