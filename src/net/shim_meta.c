/* shim_meta.c — metadata over HTTP (doc/http-api.md): the `meta.KEY=VALUE`
 * filter of GET /v1/contexts, and the "meta" member of POST and PATCH bodies.
 *
 * The query is read as it came (shim.c turns libmicrohttpd's unescaping off):
 * each name and value is percent-decoded here, '+' being a space, and must be
 * UTF-8 without NUL.  Parameters not starting with "meta." are ignored.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcpfs/meta.h"
#include "mcpfs/utf8.h"
#include "shim_impl.h"

#define META_PARAM "meta."

/* A decoded copy of a query name or value (heap), NULL when malformed. */
static char *query_decode(const char *in)
{
	size_t n = strlen(in), o = 0;
	char *out = malloc(n + 1);
	for (size_t i = 0; out && i < n; i++) {
		int ch = (unsigned char)in[i];
		if (ch == '+') {
			ch = ' ';
		} else if (ch == '%') {
			int hi = i + 2 < n ? shim_parse_hex(in[i + 1]) : -1;
			int lo = hi >= 0 ? shim_parse_hex(in[i + 2]) : -1;
			if (lo < 0 || (hi == 0 && lo == 0)) {
				free(out);
				return NULL;
			}
			ch = hi * 16 + lo;
			i += 2;
		}
		out[o++] = (char)ch;
	}
	if (out)
		out[o] = '\0';
	if (out && !utf8_valid(out, o)) {
		free(out);
		return NULL;
	}
	return out;
}

struct query {
	struct shim_filter *f;
	int err;
	char *why;
	size_t whylen;
};

static enum MHD_Result on_arg(void *cls, enum MHD_ValueKind kind, const char *key,
			      const char *value)
{
	struct query *q = cls;
	char *name = query_decode(key);
	char *val = value ? query_decode(value) : NULL;
	if (!name || (value && !val)) {
		snprintf(q->why, q->whylen, "bad percent-encoding in the query");
		q->err = -EINVAL;
	} else if (!strncmp(name, META_PARAM, sizeof(META_PARAM) - 1)) {
		const char *k = name + sizeof(META_PARAM) - 1;
		struct shim_filter *f = q->f;
		int r = meta_key_check(k, strlen(k), q->why, q->whylen);
		if (r == 0 && f->n == META_KEYS_MAX) {
			snprintf(q->why, q->whylen, "at most %d meta.* conditions", META_KEYS_MAX);
			r = -EINVAL;
		}
		if (r == 0 && val && strlen(val) > META_VALUE_MAX) {
			snprintf(q->why, q->whylen, "a metadata value is at most %d bytes",
				 META_VALUE_MAX);
			r = -EINVAL;
		}
		if (r == 0) {
			f->keys[f->n] = name;
			f->values[f->n] = val;
			f->c[f->n].key = name + sizeof(META_PARAM) - 1;
			f->c[f->n++].value = val;
			return MHD_YES;
		}
		q->err = r;
	} else {
		free(name);
		free(val);
		return MHD_YES;
	}
	free(name);
	free(val);
	return MHD_NO;
}

int shim_meta_filter_parse(struct MHD_Connection *c, struct shim_filter *f, char *why,
			   size_t whylen)
{
	memset(f, 0, sizeof(*f));
	struct query q = {f, 0, why, whylen};
	MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, on_arg, &q);
	if (q.err < 0)
		shim_meta_filter_done(f);
	return q.err < 0 ? -EINVAL : 0;
}

void shim_meta_filter_done(struct shim_filter *f)
{
	for (size_t i = 0; i < f->n; i++) {
		free(f->keys[i]);
		free(f->values[i]);
	}
	f->n = 0;
}

bool shim_meta_filter_match(struct shim *sh, const struct shim_filter *f, uint64_t id)
{
	return f->n == 0 || context_meta_match(sh->st, id, f->c, f->n) == 1;
}

int shim_meta_check(struct shim *sh, uint64_t id, const struct cJSON *body, char *why,
		    size_t whylen)
{
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(body, "meta");
	if (!m)
		return 0;
	int r = context_meta_patch_check(sh->st, id, m, why, whylen);
	/* The client's mistakes (a 65th key, a value too long) are 400s here: only
	 * the journal's own ENOSPC, later, is a 507. */
	return r == -ENOSPC || r == -E2BIG || r == -ERANGE || r == -ENODATA ? -EINVAL : r;
}

int shim_meta_apply(struct shim *sh, uint64_t id, const struct cJSON *body, char *why,
		    size_t whylen)
{
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(body, "meta");
	return m ? context_meta_patch(sh->st, id, m, why, whylen) : 0;
}
