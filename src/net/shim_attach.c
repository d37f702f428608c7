/* shim_attach.c — "attachments" of POST /v1/contexts/{name}/messages
 * (CONTRACT §9, doc/http-api.md): each {"name":…, "data": base64} goes into
 * the context's attach/ as a file written through the mount would, with the
 * same types and limits, and so goes with the message.  A refusal answers 400
 * (not base64, an unsupported type) or 413 (a limit), and nothing of the
 * request is kept. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcpfs/attach.h"
#include "mcpfs/store_attach.h"
#include "shim_impl.h"

void shim_attach_undo(struct shim *sh, uint64_t id, const cJSON *arr, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const cJSON *name =
		    cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(arr, (int)i), "name");
		if (cJSON_IsString(name))
			context_attach_remove(sh->st, id, name->valuestring);
	}
}

/* One attachment; *status receives the HTTP status of a refusal. */
static int add_one(struct shim *sh, uint64_t id, const cJSON *it, size_t i, unsigned *status,
		   char *why, size_t whylen)
{
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(it, "name");
	const cJSON *data = cJSON_GetObjectItemCaseSensitive(it, "data");
	*status = MHD_HTTP_BAD_REQUEST;
	if (!cJSON_IsObject(it) || !cJSON_IsString(name) || !cJSON_IsString(data)) {
		snprintf(why, whylen,
			 "attachments[%zu] must be {\"name\": string, \"data\": base64}", i);
		return -EINVAL;
	}
	size_t n = strlen(data->valuestring);
	if (n / 4 * 3 > ATTACH_FILE_MAX + 2) {
		*status = MHD_HTTP_CONTENT_TOO_LARGE;
		snprintf(why, whylen, "attachments[%zu] (%s): a file is at most %u MiB", i,
			 name->valuestring, ATTACH_FILE_MAX >> 20);
		return -EFBIG;
	}
	struct buf b;
	buf_init(&b, ATTACH_FILE_MAX + 3);
	int r = attach_b64_decode(data->valuestring, n, &b);
	if (r == -EINVAL)
		snprintf(why, whylen, "attachments[%zu] (%s): data is not base64", i,
			 name->valuestring);
	if (r == 0)
		r = context_attach_add(sh->st, id, name->valuestring, b.data ? b.data : "", b.len,
				       why, whylen);
	buf_done(&b);
	if (r == -EFBIG || (r == -ENOSPC && !strstr(why, "cannot save")))
		*status = MHD_HTTP_CONTENT_TOO_LARGE;
	else if (r < 0 && r != -EINVAL && r != -ENAMETOOLONG)
		*status = shim_reply_status(r);
	return r;
}

int shim_attach_add(struct shim *sh, uint64_t id, const cJSON *arr, size_t *added, unsigned *status,
		    char *why, size_t whylen)
{
	*added = 0;
	if (!arr)
		return 0;
	if (!cJSON_IsArray(arr)) {
		*status = MHD_HTTP_BAD_REQUEST;
		snprintf(why, whylen, "attachments must be an array");
		return -EINVAL;
	}
	size_t n = (size_t)cJSON_GetArraySize(arr);
	if (n > ATTACH_FILES_MAX) {
		*status = MHD_HTTP_CONTENT_TOO_LARGE;
		snprintf(why, whylen, "at most %d attachments go with one message",
			 ATTACH_FILES_MAX);
		return -ENOSPC;
	}
	for (size_t i = 0; i < n; i++) {
		int r = add_one(sh, id, cJSON_GetArrayItem(arr, (int)i), i, status, why, whylen);
		if (r < 0) {
			shim_attach_undo(sh, id, arr, i);
			return r;
		}
		*added = i + 1;
	}
	return 0;
}
