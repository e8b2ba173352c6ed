package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/redis/go-redis/v9"
)

// DefaultDeadLetterPrefix is the key prefix of [NewDeadLetters] without
// [WithKeyPrefix].
const DefaultDeadLetterPrefix = "eachhook:deadletters:"

// DeadLetters is an [eachhook.DeadLetterStore] on Redis, shared by every
// replica that uses the same key prefix, for [eachhook.WithDeadLetters]:
//
//	dead, err := redisstore.NewDeadLetters(rdb)
//	if err != nil { ... }
//	h, err := eachhook.New(eachhook.WithSecret(secret), eachhook.WithStore(store), eachhook.WithDeadLetters(dead))
//
// It keeps two keys: a hash, prefix + "{deadletters}:data", from each
// dead letter's ID to its JSON encoding (Body in base64, At in Unix
// microseconds), and a sorted set, prefix + "{deadletters}:at", of the
// IDs scored by At in Unix microseconds, which orders List (Redis orders
// equal scores by ID). Both keys carry the hash tag {deadletters}, so
// they live on one slot of a cluster, and Add and Delete change both in
// one MULTI/EXEC transaction. Nothing expires: a dead letter stays until
// it is deleted (by a successful replay or a discard). Make sure the
// server's maxmemory-policy does not evict these keys (noeviction or a
// volatile-* policy) and that it persists (AOF or RDB), or the dead
// letters are lost with the server.
type DeadLetters struct {
	client      redis.UniversalClient
	data, order string
}

var _ eachhook.DeadLetterStore = (*DeadLetters)(nil)

// NewDeadLetters returns a DeadLetters on client, configured by opts:
// its keys start with the prefix of [WithKeyPrefix]
// ([DefaultDeadLetterPrefix] without it). It does not contact the server
// and does not close the client.
func NewDeadLetters(client redis.UniversalClient, opts ...Option) (*DeadLetters, error) {
	cfg, err := newConfig(client, DefaultDeadLetterPrefix, opts)
	if err != nil {
		return nil, err
	}
	return &DeadLetters{client: client, data: cfg.prefix + "{deadletters}:data", order: cfg.prefix + "{deadletters}:at"}, nil
}

// storedDeadLetter is the JSON encoding of a dead letter in the hash.
type storedDeadLetter struct {
	ID       string `json:"id"`
	Status   string `json:"status"`
	Reason   string `json:"reason"`
	Body     []byte `json:"body"`
	Attempts int    `json:"attempts"`
	Err      string `json:"err,omitempty"`
	At       int64  `json:"at"` // Unix microseconds
}

func (s storedDeadLetter) deadLetter() eachhook.DeadLetter {
	return eachhook.DeadLetter{ID: s.ID, Status: s.Status, Reason: s.Reason, Body: s.Body, Attempts: s.Attempts, Err: s.Err, At: time.UnixMicro(s.At).UTC()}
}

// Add implements [eachhook.DeadLetterStore].
func (d *DeadLetters) Add(ctx context.Context, dl eachhook.DeadLetter) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	at := dl.At.UnixMicro()
	v, err := json.Marshal(storedDeadLetter{ID: dl.ID, Status: dl.Status, Reason: dl.Reason, Body: dl.Body, Attempts: dl.Attempts, Err: dl.Err, At: at})
	if err != nil {
		return fmt.Errorf("redisstore: encode dead letter: %w", err)
	}
	_, err = d.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, d.data, dl.ID, v)
		p.ZAdd(ctx, d.order, redis.Z{Score: float64(at), Member: dl.ID})
		return nil
	})
	if err != nil {
		return fmt.Errorf("redisstore: add dead letter: %w", err)
	}
	return nil
}

// List implements [eachhook.DeadLetterStore]. A dead letter deleted
// between its two reads is left out.
func (d *DeadLetters) List(ctx context.Context) ([]eachhook.DeadLetter, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ids, err := d.client.ZRange(ctx, d.order, 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("redisstore: list dead letters: %w", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	vals, err := d.client.HMGet(ctx, d.data, ids...).Result()
	if err != nil {
		return nil, fmt.Errorf("redisstore: list dead letters: %w", err)
	}
	list := make([]eachhook.DeadLetter, 0, len(vals))
	for _, v := range vals {
		s, ok := v.(string)
		if !ok {
			continue // deleted since the ZRANGE
		}
		dl, err := decodeDeadLetter(s)
		if err != nil {
			return nil, err
		}
		list = append(list, dl)
	}
	return list, nil
}

func decodeDeadLetter(v string) (eachhook.DeadLetter, error) {
	var s storedDeadLetter
	if err := json.Unmarshal([]byte(v), &s); err != nil {
		return eachhook.DeadLetter{}, fmt.Errorf("redisstore: decode dead letter: %w", err)
	}
	return s.deadLetter(), nil
}

// Get implements [eachhook.DeadLetterStore].
func (d *DeadLetters) Get(ctx context.Context, id string) (eachhook.DeadLetter, bool, error) {
	if err := ctx.Err(); err != nil {
		return eachhook.DeadLetter{}, false, err
	}
	v, err := d.client.HGet(ctx, d.data, id).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return eachhook.DeadLetter{}, false, nil
	case err != nil:
		return eachhook.DeadLetter{}, false, fmt.Errorf("redisstore: get dead letter: %w", err)
	}
	dl, err := decodeDeadLetter(v)
	if err != nil {
		return eachhook.DeadLetter{}, false, err
	}
	return dl, true, nil
}

// Delete implements [eachhook.DeadLetterStore]. Among simultaneous
// Deletes of one id, only the one whose HDEL removed the field reports
// true.
func (d *DeadLetters) Delete(ctx context.Context, id string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	var hdel *redis.IntCmd
	_, err := d.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		hdel = p.HDel(ctx, d.data, id)
		p.ZRem(ctx, d.order, id)
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("redisstore: delete dead letter: %w", err)
	}
	return hdel.Val() == 1, nil
}
