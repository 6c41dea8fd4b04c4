package spool

import (
	"bytes"
	"context"
	"fmt"
	"testing"
)

func batchOf(s *Store, n, size int) ([]*Message, [][]byte) {
	ms := make([]*Message, n)
	bodies := make([][]byte, n)
	for i := range n {
		ms[i] = &Message{ID: s.NewID(), Env: Envelope{From: "b@s.test", JobID: "j"},
			Rcpts: []Rcpt{{Addr: fmt.Sprintf("r%d@a.test", i)}}}
		bodies[i] = bytes.Repeat([]byte{byte('a' + i%26)}, size)
	}
	return ms, bodies
}

// TestPutBatch: a batch larger than one pebble batch is durable as a
// whole and recovered after a restart.
func TestPutBatch(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	ms, bodies := batchOf(s, 40, batchBytes/16) // about 3 groups
	must(t, s.PutBatch(context.Background(), ms, bodies), "put batch")
	if s.Len() != 40 {
		t.Errorf("Len = %d", s.Len())
	}
	b, err := s.Body(ms[39].ID)
	if err != nil || !bytes.Equal(b, bodies[39]) {
		t.Errorf("body: %v", err)
	}
	must(t, s.Close(), "close")
	s = open(t, dir)
	defer s.Close()
	n := 0
	must(t, s.Scan(func(m *Message) error { n++; return nil }), "scan")
	if n != 40 {
		t.Errorf("recovered %d, want 40", n)
	}
}

// TestPutBatchAllOrNothing: an invalid or duplicate message refuses the
// whole batch and keeps nothing.
func TestPutBatchAllOrNothing(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	ms, bodies := batchOf(s, 5, 100)
	must(t, s.Put(context.Background(), ms[3], bodies[3]), "put one")
	if err := s.PutBatch(context.Background(), ms, bodies); err == nil {
		t.Fatal("batch with a spooled id accepted")
	}
	if s.Len() != 1 {
		t.Errorf("Len = %d after a refused batch, want 1", s.Len())
	}
	ms2, bodies2 := batchOf(s, 3, 100)
	ms2[1].Rcpts = nil
	if err := s.PutBatch(context.Background(), ms2, bodies2); err == nil || s.Len() != 1 {
		t.Errorf("batch without recipients: %v, Len %d", err, s.Len())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ms3, bodies3 := batchOf(s, 2, 10)
	if err := s.PutBatch(ctx, ms3, bodies3); err == nil {
		t.Error("cancelled context accepted")
	}
}
