/* test_store_models.c — store_models.c: the Models API as the store sees it (capabilities fetched,
 * turns waiting for them); driven without FUSE or curl through the fake transport and observer of
 * store_env.h (a fresh store on the in-memory engine per test).
 */
#include "store_env.h"

/* A turn waits for the Models API's answer, is shaped from it, and a warm
 * cache asks nothing more; cancel works while it waits; a retired model fails
 * before any call; an unknown model fails the write. */
static void test_models(void)
{
	struct env e;
	env_init(&e);
	store_set_transport(e.s, &fake_models_ops, &e.fake);
	n_models_asked = 0;
	uint64_t id = make(&e, "c");
	const char *caps5 = "{\"id\":\"claude-sonnet-5-5\",\"capabilities\":{\"thinking\":"
			    "{\"supported\":true,\"types\":{\"adaptive\":{\"supported\":true},"
			    "\"enabled\":{\"supported\":false}}},\"effort\":{\"supported\":true,"
			    "\"low\":{\"supported\":true}}}}";

	CHECK_EQ_INT(context_set_config(e.s, id, "thinking = 2048\neffort = high\n", 30, e.why,
					sizeof(e.why)),
		     0);
	say(&e, id, "one");
	CHECK_EQ_INT(e.fake.n, 0); /* no call before the answer */
	CHECK_EQ_INT(n_models_asked, 1);
	CHECK_EQ_STR(models_asked[0], SETTINGS_DEFAULT_MODEL);
	CHECK(starts(view(&e, id, VIEW_STATUS), "waiting\n"));
	say(&e, id, "two"); /* queued behind; asks nothing more */
	CHECK_EQ_INT(n_models_asked, 1);
	CHECK_EQ_INT(context_cancel(e.s, id), 1); /* the waiting turn goes */
	CHECK_EQ_INT(e.fake.n, 0);
	store_models_answer(e.s, SETTINGS_DEFAULT_MODEL, 200, caps5, strlen(caps5), NULL);
	CHECK_EQ_INT(e.fake.n, 1); /* turn 2, shaped: adaptive, effort high ignored */
	const cJSON *th = body_field(&e, 0, "thinking");
	CHECK(th && !strcmp(cJSON_GetObjectItem(th, "type")->valuestring, "adaptive"));
	CHECK(body_field(&e, 0, "output_config") == NULL);
	CHECK(has(view(&e, id, VIEW_STATUS), "ignored: effort high (the model takes low)\n"));
	reply(&e, last_call(&e), "ok", 0, 1);
	for (int i = 0; i < 5; i++) {
		say(&e, id, "more");
		reply(&e, last_call(&e), "ok", 0, 1);
	}
	CHECK_EQ_INT(n_models_asked, 1); /* warm: no more questions */
	CHECK_EQ_INT(e.fake.n, 6);

	/* retired: the list is asked for (the advice), then the turn fails */
	const char *old = "{\"id\":\"old-1\",\"line\":\"l\",\"lifecycle\":\"retired\"}";
	const char *page = "{\"data\":[{\"id\":\"new-2\",\"line\":\"l\"},{\"id\":\"old-1\","
			   "\"line\":\"l\",\"lifecycle\":\"retired\"}],\"has_more\":false}";
	store_models_answer(e.s, "old-1", 200, old, strlen(old), NULL);
	CHECK_EQ_INT(context_set_model(e.s, id, "old-1\n", 6, e.why, sizeof(e.why)), 0);
	CHECK_EQ_INT(n_models_asked, 2);
	CHECK_EQ_STR(models_asked[1], "*"); /* the write asked for the list */
	say(&e, id, "to the retired");
	CHECK_EQ_INT(e.fake.n, 6);
	size_t lens[] = {strlen(page)};
	store_models_list(e.s, &page, lens, 1, NULL);
	CHECK_EQ_INT(e.fake.n, 6); /* no call */
	CHECK(has(view(&e, id, VIEW_STATUS), "last_error: model_retired: old-1 is retired; the "
					     "newest active model of line 'l' is new-2\n"));

	/* unknown: the write fails */
	store_models_answer(e.s, "nope-9", 404, NULL, 0, NULL);
	CHECK_EQ_INT(context_set_model(e.s, id, "nope-9\n", 7, e.why, sizeof(e.why)), -EINVAL);
	CHECK(has(e.why, "does not exist"));
	CHECK_EQ_INT(
	    store_model_check_text(e.s, id, 1, "model = nope-9\n", 15, e.why, sizeof(e.why)),
	    -EINVAL);
	CHECK_EQ_INT(store_model_check_text(e.s, id, 1, "model = nope-9", 14, e.why, sizeof(e.why)),
		     0); /* not a whole line yet */
	CHECK(has(view(&e, id, VIEW_MODEL), "old-1"));
	env_done(&e);
}

int main(void)
{
	static const struct store_env_test tests[] = {
	    {"models", test_models},
	};
	return store_env_run(tests, sizeof(tests) / sizeof(tests[0]));
}
