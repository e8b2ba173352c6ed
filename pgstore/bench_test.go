package pgstore_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/eachhook/eachhook/pgstore/pgtest"
)

// BenchmarkClaim measures a winning Claim (the INSERT ... ON CONFLICT DO
// UPDATE ... WHERE expired statement, plus remembering the token), to
// compare with BenchmarkRawInsert on the same pool.
func BenchmarkClaim(b *testing.B) {
	pool := pgtest.Pool(b)
	s := newStore(b, pool, pgtest.Table(b, pool))
	ctx := context.Background()
	i := 0
	for b.Loop() {
		i++
		_, ok, err := s.Claim(ctx, strconv.Itoa(i), time.Hour)
		if err != nil || !ok {
			b.Fatalf("Claim = %v, %v", ok, err)
		}
	}
}

// BenchmarkRawInsert measures the floor: INSERT ... ON CONFLICT DO NOTHING
// of new ids into the same table.
func BenchmarkRawInsert(b *testing.B) {
	pool := pgtest.Pool(b)
	table := pgtest.Table(b, pool)
	newStore(b, pool, table) // creates the table
	ctx := context.Background()
	sql := "INSERT INTO " + table + " (id, token, expires_at) VALUES ($1, gen_random_uuid(), now() + interval '1 hour') ON CONFLICT (id) DO NOTHING"
	i := 0
	for b.Loop() {
		i++
		tag, err := pool.Exec(ctx, sql, strconv.Itoa(i))
		if err != nil || tag.RowsAffected() != 1 {
			b.Fatalf("INSERT = %v, %v", tag, err)
		}
	}
}
