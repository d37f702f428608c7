/* shim_auth.c — who may talk to the shim (SECURITY.md has the threat model).
 *
 * Three independent checks, each against a different attack, all before any
 * routing so a refused client learns nothing about the contexts:
 *   Host    must name the listening port on a loopback name or address (or the
 *           bound address itself): a DNS-rebinding page's requests carry its own
 *           host name, which JavaScript cannot change;
 *   Origin  when present, must be the shim's own loopback origin: browsers add it
 *           to cross-site requests (and to every POST), so a web page is refused
 *           even for the "simple" requests CORS does not preflight;
 *   token   with --http-token-file, Authorization: Bearer <token>, compared in
 *           constant time; browsers cannot add that header cross-origin without
 *           a preflight, which is never approved (no CORS headers are sent).
 * A header that appears twice (two Host lines, say) is refused rather than
 * guessing which one counts.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shim_impl.h"

static int token_file_open(const char *path, char *why, size_t whylen)
{
	/* O_NONBLOCK: a FIFO would block the open until a writer came. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		snprintf(why, whylen, "cannot read HTTP token file '%s': %s", path,
			 strerror(errno));
		if (fd >= 0)
			close(fd);
		return -EACCES;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(why, whylen, "HTTP token file '%s' is not a regular file", path);
		close(fd);
		return -EINVAL;
	}
	if (st.st_mode & 077) {
		snprintf(why, whylen,
			 "HTTP token file '%s' is readable by group or others "
			 "(mode %04o): chmod 600 it",
			 path, (unsigned)(st.st_mode & 07777));
		close(fd);
		return -EACCES;
	}
	return fd;
}

/* A bearer token is token68-ish: printable ASCII without spaces, so it can be
 * sent as is in a header and never needs quoting. */
static bool token_chars_ok(const char *t, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)t[i] <= 0x20 || (unsigned char)t[i] >= 0x7f)
			return false;
	return true;
}

static int token_validate(const char *path, const char *t, ssize_t n, char *why, size_t whylen)
{
	if (n < 0) {
		snprintf(why, whylen, "cannot read HTTP token file '%s'", path);
		return -EIO;
	}
	if (n > SHIM_TOKEN_MAX) {
		snprintf(why, whylen, "HTTP token file '%s' is over %d bytes", path,
			 SHIM_TOKEN_MAX);
		return -EFBIG;
	}
	if (!token_chars_ok(t, (size_t)n)) {
		snprintf(why, whylen,
			 "HTTP token file '%s' must hold one line of printable "
			 "characters without spaces",
			 path);
		return -EINVAL;
	}
	if (n < SHIM_TOKEN_MIN) {
		snprintf(why, whylen,
			 "HTTP token in '%s' is too short: use at least %d characters "
			 "(head -c 32 /dev/urandom | base64)",
			 path, SHIM_TOKEN_MIN);
		return -EINVAL;
	}
	return 0;
}

int shim_auth_load_token(struct shim *sh, const char *path, char *why, size_t whylen)
{
	int fd = token_file_open(path, why, whylen);
	if (fd < 0)
		return fd;
	char *t = calloc(1, SHIM_TOKEN_MAX + 2); /* shim_free wipes all of it */
	if (!t) {
		close(fd);
		return -ENOMEM;
	}
	ssize_t n = read(fd, t, SHIM_TOKEN_MAX + 1);
	close(fd);
	while (n > 0 && (t[n - 1] == '\n' || t[n - 1] == '\r' || t[n - 1] == ' '))
		t[--n] = '\0';
	int r = token_validate(path, t, n, why, whylen);
	if (r < 0) {
		explicit_bzero(t, SHIM_TOKEN_MAX + 2);
		free(t);
		return r;
	}
	sh->token = t;
	sh->token_len = (size_t)n;
	return 0;
}

void shim_auth_init(struct shim *sh, const char *bound_host, unsigned port)
{
	static const char *const loopback[] = {"127.0.0.1", "localhost", "[::1]"};
	/* Browsers leave the default port out of an origin. */
	char oport[8] = "";
	if (port != 80)
		snprintf(oport, sizeof(oport), ":%u", port);
	sh->port = port;
	sh->n_hosts = 0;
	for (size_t i = 0; i < SHIM_ORIGINS; i++) {
		snprintf(sh->hosts[sh->n_hosts++], sizeof(sh->hosts[0]), "%s:%u", loopback[i],
			 port);
		snprintf(sh->origins[i], sizeof(sh->origins[0]), "http://%s%s", loopback[i], oport);
	}
	/* A client of a non-loopback bind names that address; a loopback bind such
	 * as 127.0.0.2 is named by its own address too. */
	bool listed = false;
	for (size_t i = 0; i < SHIM_ORIGINS; i++)
		listed |= !strcasecmp(bound_host, loopback[i]);
	if (!listed)
		snprintf(sh->hosts[sh->n_hosts++], sizeof(sh->hosts[0]), "%s:%u", bound_host, port);
}

struct header_count {
	const char *name;
	unsigned n;
};

static enum MHD_Result on_header(void *cls, enum MHD_ValueKind kind, const char *key,
				 const char *value)
{
	struct header_count *h = cls;
	if (!strcasecmp(key, h->name))
		h->n++;
	return MHD_YES;
}

/* The one value of a header, NULL when absent; *twice when it came more than once. */
static const char *header_one(struct MHD_Connection *c, const char *name, bool *twice)
{
	struct header_count h = {name, 0};
	MHD_get_connection_values(c, MHD_HEADER_KIND, on_header, &h);
	*twice = h.n > 1;
	return h.n == 1 ? MHD_lookup_connection_value(c, MHD_HEADER_KIND, name) : NULL;
}

static bool host_ok(const struct shim *sh, const char *host)
{
	if (!host)
		return false;
	/* Clients of port 80 may leave the port out (curl does). */
	char with_port[96];
	const char *end = host[0] == '[' ? strchr(host, ']') : host;
	if (sh->port == 80 && end && !strchr(end, ':')) {
		snprintf(with_port, sizeof(with_port), "%s:80", host);
		host = with_port;
	}
	for (size_t i = 0; i < sh->n_hosts; i++)
		if (!strcasecmp(host, sh->hosts[i]))
			return true;
	return false;
}

static bool origin_ok(const struct shim *sh, const char *origin)
{
	for (size_t i = 0; i < SHIM_ORIGINS; i++)
		if (!strcasecmp(origin, sh->origins[i]))
			return true;
	return false;
}

/* Constant time in the token's length: the time taken tells nothing about how
 * much of a guess matched. */
static bool token_equal(const char *want, size_t want_len, const char *got)
{
	size_t got_len = strlen(got);
	unsigned char diff = (unsigned char)(got_len != want_len);
	for (size_t i = 0; i < want_len; i++)
		diff |= (unsigned char)want[i] ^ (unsigned char)(i < got_len ? got[i] : 0);
	return diff == 0;
}

/* 0: the token matches; else whether any credentials were offered (+1/-1). */
static int token_check(const struct shim *sh, struct MHD_Connection *c)
{
	bool twice;
	const char *auth = header_one(c, MHD_HTTP_HEADER_AUTHORIZATION, &twice);
	if (twice)
		return 1;
	if (!auth)
		return -1;
	if (strncasecmp(auth, "Bearer ", 7) != 0)
		return 1;
	auth += 7;
	while (*auth == ' ')
		auth++;
	return token_equal(sh->token, sh->token_len, auth) ? 0 : 1;
}

enum MHD_Result shim_auth_check(struct shim *sh, struct MHD_Connection *c, bool *refused)
{
	bool twice;
	*refused = true;
	const char *host = header_one(c, MHD_HTTP_HEADER_HOST, &twice);
	if (twice || !host_ok(sh, host))
		return shim_reply_error(c, MHD_HTTP_FORBIDDEN,
					"Host %s%s%s is not this server's "
					"loopback address (%s)",
					host ? "'" : "", host ? host : "missing", host ? "'" : "",
					sh->address);
	const char *origin = header_one(c, MHD_HTTP_HEADER_ORIGIN, &twice);
	if (twice || (origin && !origin_ok(sh, origin)))
		return shim_reply_error(c, MHD_HTTP_FORBIDDEN,
					"cross-origin requests are refused "
					"(Origin '%s')",
					origin ? origin : "given twice");
	if (sh->token) {
		int t = token_check(sh, c);
		if (t != 0)
			return shim_reply_unauthorized(c, t > 0);
	}
	*refused = false;
	return MHD_YES;
}
