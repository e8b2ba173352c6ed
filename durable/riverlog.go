package durable

import (
	"context"
	"log/slog"
)

// migrationLog passes River's migration logs on with INFO lowered to
// DEBUG: rivermigrate logs a line per migration it applies or checks at
// every open, which says nothing at the default level.
type migrationLog struct{ slog.Handler }

func newMigrationLogger(l *slog.Logger) *slog.Logger {
	return slog.New(migrationLog{l.Handler()})
}

// Enabled implements slog.Handler.
func (h migrationLog) Enabled(ctx context.Context, level slog.Level) bool {
	return h.Handler.Enabled(ctx, lower(level))
}

// Handle implements slog.Handler.
func (h migrationLog) Handle(ctx context.Context, r slog.Record) error {
	r.Level = lower(r.Level)
	return h.Handler.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h migrationLog) WithAttrs(attrs []slog.Attr) slog.Handler {
	return migrationLog{h.Handler.WithAttrs(attrs)}
}

// WithGroup implements slog.Handler.
func (h migrationLog) WithGroup(name string) slog.Handler {
	return migrationLog{h.Handler.WithGroup(name)}
}

func lower(l slog.Level) slog.Level {
	if l == slog.LevelInfo {
		return slog.LevelDebug
	}
	return l
}
