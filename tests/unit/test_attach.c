/* test_attach.c — attach.c: types by content, text checks, image sizes, PDF
 * pages, token estimates, base64, hashes, names. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mcpfs/attach.h"

static int sniff(const char *p, size_t n, bool complete, const char **why)
{
	*why = NULL;
	return attach_sniff(p, n, complete, why);
}

static void test_sniff(void)
{
	const char *why;
	CHECK_EQ_INT(sniff("\x89PNG\r\n\x1a\n", 8, false, &why), ATTACH_PNG);
	CHECK_EQ_INT(sniff("\x89PN", 3, false, &why), ATTACH_UNDECIDED);
	CHECK_EQ_INT(sniff("\xff\xd8\xff\xe0", 4, false, &why), ATTACH_JPEG);
	CHECK_EQ_INT(sniff("GIF89a..", 8, false, &why), ATTACH_GIF);
	CHECK_EQ_INT(sniff("GIF87a", 6, false, &why), ATTACH_GIF);
	CHECK_EQ_INT(sniff("RIFF\0\0\0\0WEBPVP8X", 16, false, &why), ATTACH_WEBP);
	CHECK_EQ_INT(sniff("RIFF\0\0\0\0WAVEfmt ", 16, false, &why), -EINVAL);
	CHECK_EQ_STR(why, "unsupported type: WAV audio");
	CHECK_EQ_INT(sniff("%PDF-1.7\n", 9, false, &why), ATTACH_PDF);
	CHECK_EQ_INT(sniff("%PD", 3, false, &why), ATTACH_UNDECIDED);
	CHECK_EQ_INT(sniff("%PD", 3, true, &why), ATTACH_TEXT); /* a short text */
	CHECK_EQ_INT(sniff("PK\x03\x04\x14\0", 6, false, &why), -EINVAL);
	CHECK_EQ_STR(why, "unsupported type: zip archive");
	CHECK_EQ_INT(sniff("\x1f\x8b\x08", 3, false, &why), -EINVAL);
	CHECK_EQ_STR(why, "unsupported type: gzip data");
	CHECK_EQ_INT(sniff("\x7f"
			   "ELF\x02",
			   5, false, &why),
		     -EINVAL);
	CHECK_EQ_STR(why, "unsupported type: ELF executable");
	CHECK_EQ_INT(sniff("\xff\xfeh\0i\0", 6, false, &why), -EINVAL);
	CHECK(why && strstr(why, "UTF-16"));
	/* Words that begin like a format are text while their bytes are. */
	CHECK_EQ_INT(sniff("BMW cars are fast\n", 18, false, &why), ATTACH_TEXT);
	CHECK_EQ_INT(sniff("MZ\x90\0\x03\0", 6, false, &why), -EINVAL);
	CHECK_EQ_STR(why, "unsupported type: Windows executable");
	CHECK_EQ_INT(sniff("# notes\nnaïve café\n", 21, false, &why), ATTACH_TEXT);
	CHECK_EQ_INT(sniff("hello\0world", 11, false, &why), -EINVAL);
	CHECK(why && strstr(why, "NUL"));
	CHECK_EQ_INT(sniff("caf\xc3", 4, false, &why), ATTACH_UNDECIDED); /* under 8 bytes */
	CHECK_EQ_INT(sniff("a long caf\xc3", 11, false, &why), ATTACH_TEXT);
	CHECK_EQ_INT(sniff("a long caf\xc3", 11, true, &why), -EINVAL);
	CHECK_EQ_INT(sniff("bad \xff byte", 10, false, &why), -EINVAL);
	CHECK_EQ_INT(sniff("", 0, false, &why), ATTACH_UNDECIDED);
	CHECK_EQ_INT(sniff("\0\0\0 ftypisom", 12, false, &why), -EINVAL);
	CHECK_EQ_STR(why, "unsupported type: MP4/QuickTime video");
}

static void test_text_check(void)
{
	const char *why;
	const char *t = "abc \xc3\xa9 def";
	CHECK_EQ_INT(attach_text_check(t, strlen(t), 0, true, &why), (long)strlen(t));
	CHECK_EQ_INT(attach_text_check(t, 5, 0, false, &why), 4); /* cut: more may come */
	CHECK_EQ_INT(attach_text_check(t, 5, 0, true, &why), -EINVAL);
	CHECK_EQ_INT(attach_text_check("ab\x01", 3, 0, false, &why), -EINVAL);
	CHECK_EQ_INT(attach_text_check("a\tb\r\n\f", 6, 0, true, &why), 6);
}

static void test_sizes_and_estimates(void)
{
	unsigned char png[24] = "\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR";
	png[16] = 0, png[17] = 0, png[18] = 0x07, png[19] = 0x80; /* 1920 */
	png[20] = 0, png[21] = 0, png[22] = 0x04, png[23] = 0x38; /* 1080 */
	uint32_t w, h;
	CHECK(attach_image_size(ATTACH_PNG, png, sizeof(png), &w, &h));
	CHECK_EQ_INT(w, 1920);
	CHECK_EQ_INT(h, 1080);
	CHECK_EQ_INT(attach_image_tokens(200, 150), 40);     /* 30000 / 750 */
	CHECK_EQ_INT(attach_image_tokens(1000, 1000), 1334); /* ceil(1e6 / 750) */
	CHECK_EQ_INT(attach_image_tokens(1920, 1080), 1534); /* scaled to 1.15 MP */
	CHECK_EQ_INT(attach_image_tokens(8000, 8000), 1534); /* 1.15 MP at most */
	CHECK_EQ_INT(attach_estimate(ATTACH_PNG, png, 10), ATTACH_IMAGE_TOKENS_MAX);
	unsigned char gif[10] = "GIF89a\x20\x00\x10\x00";
	CHECK(attach_image_size(ATTACH_GIF, gif, sizeof(gif), &w, &h) && w == 32 && h == 16);
	unsigned char jpg[] = {0xff, 0xd8, 0xff, 0xe0, 0,    4,	   0, 0, 0xff, 0xc0, 0,
			       11,   8,	   0x01, 0xe0, 0x02, 0x80, 1, 1, 0x11, 0};
	CHECK(attach_image_size(ATTACH_JPEG, jpg, sizeof(jpg), &w, &h) && w == 640 && h == 480);
	const char *pdf = "%PDF-1.4 << /Type /Pages /Count 7 >> << /Type /Page >>";
	CHECK_EQ_INT(attach_pdf_pages(pdf, strlen(pdf)), 7);
	const char *pdf2 = "%PDF-1.4 << /Type /Page >> << /Type/Page >> << /Type /Pages >>";
	CHECK_EQ_INT(attach_pdf_pages(pdf2, strlen(pdf2)), 2);
	CHECK_EQ_INT(attach_pdf_pages("%PDF-", 5), 1);
	CHECK_EQ_INT(attach_estimate(ATTACH_PDF, pdf, strlen(pdf)), 7 * ATTACH_PDF_PAGE_TOKENS);
	CHECK_EQ_INT(attach_type_max(ATTACH_GIF), ATTACH_IMAGE_MAX);
	CHECK_EQ_INT(attach_type_max(ATTACH_PDF), ATTACH_FILE_MAX);
}

static void test_base64_hash_names(void)
{
	char out[16];
	const char *v[][2] = {
	    {"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"}, {"foobar", "Zm9vYmFy"}};
	for (size_t i = 0; i < 5; i++) {
		size_t n = strlen(v[i][0]);
		CHECK_EQ_INT(attach_b64_len(n), strlen(v[i][1]));
		attach_b64_encode(v[i][0], n, out);
		out[attach_b64_len(n)] = '\0';
		CHECK_EQ_STR(out, v[i][1]);
		struct buf b;
		buf_init(&b, 64);
		CHECK_EQ_INT(attach_b64_decode(v[i][1], strlen(v[i][1]), &b), 0);
		CHECK(b.len == n && (!n || !memcmp(b.data, v[i][0], n)));
		buf_done(&b);
	}
	struct buf b;
	buf_init(&b, 64);
	CHECK_EQ_INT(attach_b64_decode("Zm9", 3, &b), -EINVAL);
	CHECK_EQ_INT(attach_b64_decode("Zm9!", 4, &b), -EINVAL);
	CHECK_EQ_INT(attach_b64_decode("Z=9v", 4, &b), -EINVAL);
	CHECK_EQ_INT(attach_b64_decode("Zg==Zg==", 8, &b), -EINVAL);
	buf_done(&b);
	char h1[33], h2[33];
	attach_hash("abc", 3, h1);
	attach_hash("abd", 3, h2);
	CHECK(attach_hash_valid(h1) && attach_hash_valid(h2) && strcmp(h1, h2));
	CHECK(!attach_hash_valid("XYZ"));
	char s[32];
	attach_size_text(312, s, sizeof(s));
	CHECK_EQ_STR(s, "312 B");
	attach_size_text(1258291, s, sizeof(s));
	CHECK_EQ_STR(s, "1.2 MiB");
	const char *why;
	CHECK_EQ_INT(attach_name_check("report.pdf", 10, &why), 0);
	CHECK_EQ_INT(attach_name_check(".swp", 4, &why), -EINVAL);
	CHECK_EQ_INT(attach_name_check("a\nb", 3, &why), -EINVAL);
	CHECK_EQ_INT(attach_name_check("", 0, &why), -EINVAL);
	CHECK_EQ_STR(attach_type_name(ATTACH_WEBP), "WebP");
	CHECK_EQ_INT(attach_type_from_name("PDF"), ATTACH_PDF);
	CHECK_EQ_STR(attach_media_type(ATTACH_TEXT), "text/plain");
}

/* util's buf_reserve_exact, which request bodies with attachments use. */
static void test_reserve_exact(void)
{
	struct buf b;
	buf_init(&b, 100);
	CHECK_EQ_INT(buf_reserve_exact(&b, 37), 0);
	CHECK_EQ_INT(b.cap, 37);
	CHECK_EQ_INT(buf_append(&b, "0123456789", 10), 0);
	CHECK_EQ_INT(buf_reserve_exact(&b, 20), 0); /* enough already: unchanged */
	CHECK_EQ_INT(b.cap, 37);
	CHECK_EQ_INT(buf_reserve_exact(&b, 101), -EFBIG);
	CHECK(b.len == 10 && !memcmp(b.data, "0123456789", 10));
	buf_done(&b);
}

int main(void)
{
	test_reserve_exact();
	test_sniff();
	test_text_check();
	test_sizes_and_estimates();
	test_base64_hash_names();
	return check_report();
}
