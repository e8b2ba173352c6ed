package durable

import (
	"container/list"
	"context"
	"database/sql/driver"
	"errors"
)

// stmtCacheSize bounds the prepared statements kept per SQLite
// connection. River runs a few dozen distinct statements; a batch insert's
// text varies with the batch size.
const stmtCacheSize = 256

// stmtCachingConnector opens SQLite connections that keep their prepared
// statements. River's riversqlite sends each statement as text, and the
// modernc.org/sqlite driver parses it again on every call: with River's
// long statements, parsing was a third of the CPU time of a busy Queue.
type stmtCachingConnector struct {
	dsn    string
	driver driver.Driver
}

// Connect implements driver.Connector.
func (c stmtCachingConnector) Connect(context.Context) (driver.Conn, error) {
	conn, err := c.driver.Open(c.dsn)
	if err != nil {
		return nil, err
	}
	inner, ok := conn.(sqliteConn)
	if !ok {
		_ = conn.Close()
		return nil, errors.New("durable: SQLite driver lacks context methods")
	}
	return &stmtCachingConn{sqliteConn: inner, stmts: map[string]*list.Element{}, lru: list.New()}, nil
}

// Driver implements driver.Connector.
func (c stmtCachingConnector) Driver() driver.Driver { return c.driver }

// sqliteConn is what modernc.org/sqlite's connection implements and the
// cache passes through.
type sqliteConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.SessionResetter
	driver.Validator
	driver.Pinger
}

// stmtCachingConn is one connection with its statement cache. database/sql
// uses a connection from one goroutine at a time, so it needs no lock.
type stmtCachingConn struct {
	sqliteConn
	stmts map[string]*list.Element // query -> element of lru holding *cachedStmt
	lru   *list.List               // most recently used first
}

type cachedStmt struct {
	query string
	stmt  driver.Stmt
	busy  bool // its rows are open: the statement cannot run again yet
}

// stmt returns the cached statement of query, preparing it if needed; nil
// if it is in use by open rows.
func (c *stmtCachingConn) stmt(ctx context.Context, query string) (*cachedStmt, error) {
	if e, ok := c.stmts[query]; ok {
		c.lru.MoveToFront(e)
		s := e.Value.(*cachedStmt)
		if s.busy {
			return nil, nil
		}
		return s, nil
	}
	st, err := c.sqliteConn.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	s := &cachedStmt{query: query, stmt: st}
	c.stmts[query] = c.lru.PushFront(s)
	for c.lru.Len() > stmtCacheSize {
		e := c.lru.Back()
		old := e.Value.(*cachedStmt)
		if old.busy {
			break // closed when its rows are: see cachedRows.Close
		}
		c.lru.Remove(e)
		delete(c.stmts, old.query)
		_ = old.stmt.Close()
	}
	return s, nil
}

// ExecContext implements driver.ExecerContext with a cached statement.
func (c *stmtCachingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	s, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return c.sqliteConn.ExecContext(ctx, query, args)
	}
	return s.stmt.(driver.StmtExecContext).ExecContext(ctx, args)
}

// QueryContext implements driver.QueryerContext with a cached statement.
func (c *stmtCachingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	s, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return c.sqliteConn.QueryContext(ctx, query, args)
	}
	rows, err := s.stmt.(driver.StmtQueryContext).QueryContext(ctx, args)
	if err != nil {
		return nil, err
	}
	s.busy = true
	return &cachedRows{Rows: rows, c: c, s: s}, nil
}

// Close implements driver.Conn: it closes the cached statements, then the
// connection.
func (c *stmtCachingConn) Close() error {
	for e := c.lru.Front(); e != nil; e = e.Next() {
		_ = e.Value.(*cachedStmt).stmt.Close()
	}
	c.stmts, c.lru = nil, list.New()
	return c.sqliteConn.Close()
}

// cachedRows frees its statement for the next call when closed.
type cachedRows struct {
	driver.Rows
	c *stmtCachingConn
	s *cachedStmt
}

// Close implements driver.Rows.
func (r *cachedRows) Close() error {
	err := r.Rows.Close()
	r.s.busy = false
	if _, cached := r.c.stmts[r.s.query]; !cached {
		_ = r.s.stmt.Close() // evicted or the connection closed meanwhile
	}
	return err
}
