// Package eachloop closes the loop between creating each::labs predictions
// and learning their outcomes: it creates each prediction with a webhook
// secret of its own, remembers which secret belongs to which prediction,
// and polls the API for the predictions whose webhook never came: many at
// once from the organisation's executions list (GET /v1/executions), each
// one with GET /v1/prediction/{id} when the list cannot settle it (see
// [Loop.Run]).
//
//	exp, err := eachloop.NewMemoryExpectations() // or a durable Expectations
//	loop, err := eachloop.New(client, exp, "https://example.com/webhooks/prediction")
//	store := eachhook.NewMemoryStore()
//	h, err := eachhook.New(
//		eachhook.WithSecretLookup(loop.SecretLookup), // each delivery verified with its own secret
//		eachhook.WithStore(loop.Store(store)),        // an accepted outcome stops the polling
//	)
//	h.OnSuccess(...)
//	h.OnFailed(...)
//	go loop.Run(ctx, h)
//	id, err := loop.Create(ctx, eachlabs.PredictionRequest{Model: "flux-1-1-pro", Input: input})
//
// # Expectations
//
// [Loop.Create] records an [Expectation] (the prediction's id, its secret,
// when it was created) in an [Expectations] store before it returns. The
// in-memory [MemoryExpectations] forgets everything at a restart; those
// of packages pgexpect (PostgreSQL) and redisexpect (Redis) keep the
// expectations and their secrets across restarts and share them between
// replicas, and those of package sqliteexpect keep them in a SQLite file
// for a single process. Package expectationstest is the conformance suite and
// the restart test every implementation runs.
//
// # Guarantees
//
// Every expectation ends in exactly one of three ways: an outcome is
// accepted by the Handler (from the webhook or from a poll, whichever
// comes first: both go through the Handler's dedupe store, so they never
// both run a callback), the prediction is found cancelled (see
// [Loop.Run]), or the horizon passes and a [*GiveUpError] is logged and
// reaches the Loop's error hook ([WithErrorHandler]). An outcome is
// marked done only when its callback finished (through [Loop.Store]: the Handler's Complete), or it became a dead letter (its ReleaseDeadLetter), so an outcome
// accepted by a process that died before its callback finished stays
// pending and is dispatched again once the claim's lease ran out; one
// whose callback failed on every attempt became a dead letter and is done.
// Callbacks must therefore be idempotent. A
// delivery signed with another prediction's secret is refused with 401.
// What survives a crash is what the chosen [Expectations] and the
// Handler's queue keep: with [MemoryExpectations] a restart loses every
// expectation.
package eachloop
