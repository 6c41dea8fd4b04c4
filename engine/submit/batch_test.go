package submit

import (
	"context"
	"errors"
	"testing"

	"github.com/sluice-mta/sluice/engine/reply"
	"github.com/sluice-mta/sluice/engine/spool"
)

type batchSpool struct {
	puts, batches int
	fail          bool
}

func (b *batchSpool) Put(context.Context, *spool.Message, []byte) error { b.puts++; return nil }
func (b *batchSpool) PutBatch(_ context.Context, ms []*spool.Message, _ [][]byte) error {
	b.batches++
	if b.fail {
		return errors.New("disk full")
	}
	return nil
}

type queued []string

func (q *queued) Enqueue(m *spool.Message) { *q = append(*q, m.ID) }

func TestSubmitBatch(t *testing.T) {
	refuseB := TransformFunc(func(_ context.Context, m *spool.Message, body []byte) ([]byte, error) {
		if m.ID == "b" {
			return nil, reply.New(550, reply.Status{5, 7, 1}, "no")
		}
		return append([]byte("X-Added: 1\r\n"), body...), nil
	})
	msgs := func() []*spool.Message {
		return []*spool.Message{{ID: "a"}, {ID: "b"}, {ID: "c"}}
	}
	sp, q := &batchSpool{}, &queued{}
	p := &Pipeline{Spool: sp, Queue: q, Transforms: []Transform{refuseB}}
	ms, bodies := msgs(), [][]byte{[]byte("1"), []byte("2"), []byte("3")}
	refused, err := p.SubmitBatch(context.Background(), ms, bodies)
	if err != nil || refused[0] != nil || refused[1] == nil || refused[2] != nil {
		t.Fatalf("refused %v, err %v", refused, err)
	}
	if sp.batches != 1 || sp.puts != 0 || len(*q) != 2 || (*q)[0] != "a" || (*q)[1] != "c" {
		t.Errorf("batches %d puts %d queued %v", sp.batches, sp.puts, *q)
	}
	if ms[0].Env.Size != int64(len("X-Added: 1\r\n1")) {
		t.Errorf("size %d", ms[0].Env.Size)
	}
	sp, q = &batchSpool{fail: true}, &queued{}
	p = &Pipeline{Spool: sp, Queue: q}
	if _, err := p.SubmitBatch(context.Background(), msgs(), [][]byte{nil, nil, nil}); err == nil || len(*q) != 0 {
		t.Errorf("failed batch: err %v, queued %v", err, *q)
	}
}
