package spool

import (
	"bytes"
	"context"
	"runtime"
	"sync/atomic"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// walSyncs returns how many WAL fsyncs pebble has done since Open.
func walSyncs(t testing.TB, s *Store) uint64 {
	var m dto.Metric
	must(t, s.db.Metrics().LogWriter.FsyncLatency.Write(&m), "fsync histogram")
	return m.GetHistogram().GetSampleCount()
}

func benchMessage(id string) *Message {
	return &Message{ID: id, Env: Envelope{From: "bounce@sender.test", SourceIP: "127.0.0.1", Size: 5 << 10},
		Rcpts: []Rcpt{{Addr: "user@rcpt.test", Notify: "FAILURE"}}}
}

// reportPuts reports throughput and how many Puts shared each WAL fsync.
func reportPuts(b *testing.B, s *Store, syncs0 uint64) {
	syncs := walSyncs(b, s) - syncs0
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	if syncs > 0 {
		b.ReportMetric(float64(b.N)/float64(syncs), "msgs/fsync")
	}
}

// BenchmarkPutSerial: one writer, so one fsync per message.
func BenchmarkPutSerial(b *testing.B) {
	s := open(b, b.TempDir())
	defer s.Close()
	body := bytes.Repeat([]byte("x"), 5<<10)
	ctx := context.Background()
	syncs0 := walSyncs(b, s)
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for range b.N {
		if err := s.Put(ctx, benchMessage(s.NewID()), body); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportPuts(b, s, syncs0)
}

// BenchmarkPutParallel: about 64 concurrent writers, whose synced commits
// pebble groups into shared WAL fsyncs.
func BenchmarkPutParallel(b *testing.B) {
	s := open(b, b.TempDir())
	defer s.Close()
	benchParallel(b, s)
}

func benchParallel(b *testing.B, s *Store) {
	body := bytes.Repeat([]byte("x"), 5<<10)
	ctx := context.Background()
	syncs0 := walSyncs(b, s)
	procs := runtime.GOMAXPROCS(0)
	b.SetParallelism((64 + procs - 1) / procs)
	b.SetBytes(int64(len(body)))
	var failed atomic.Bool
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.Put(ctx, benchMessage(s.NewID()), body); err != nil && !failed.Swap(true) {
				b.Error(err)
			}
		}
	})
	b.StopTimer()
	reportPuts(b, s, syncs0)
}
