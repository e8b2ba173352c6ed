package outputs_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/outputs"
)

// A Saver in front of an OnSuccess callback: the callback gets the saved
// files. (Here the output's server is a local test server, so the example
// trusts its certificate and allows its loopback address.)
func ExampleSaver_Wrap() {
	cdn := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		io.WriteString(w, "the image")
	}))
	defer cdn.Close()
	dir, _ := os.MkdirTemp("", "outputs")
	defer os.RemoveAll(dir)

	saver, err := outputs.New(outputs.Dir(dir),
		outputs.WithTLSConfig(cdn.Client().Transport.(*http.Transport).TLSClientConfig),
		outputs.WithAllowPrivate())
	if err != nil {
		panic(err)
	}
	onSuccess := saver.Wrap(func(ctx context.Context, s *eachhook.Success, saved []outputs.Saved) error {
		for i, f := range saved {
			if f.URL == "" { // not a URL: passed through
				fmt.Printf("%d: %s\n", i, f.Value)
				continue
			}
			fmt.Printf("%d: %s, %d bytes, %s, sha256 %s...\n", i, filepath.Base(f.Location), f.Size, f.ContentType, f.SHA256[:12])
		}
		return nil
	})
	// h.OnSuccess(onSuccess) registers it; here it is called directly.
	s := &eachhook.Success{ID: "pred-1", Output: []byte(`["` + cdn.URL + `/image.png", "a caption"]`)}
	if err := onSuccess(context.Background(), s); err != nil {
		panic(err)
	}
	// Output:
	// 0: pred-1-0.png, 9 bytes, image/png, sha256 97e9d7a16021...
	// 1: "a caption"
}

// A Destination on an object store, through your own client: each output
// is buffered in a temporary file and put, with its record as metadata,
// on Commit, so that an object exists only complete. The bucket here is a
// map; with S3, Put is a PutObject and Head a HeadObject.
func Example_objectStore() {
	cdn := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "the video")
	}))
	defer cdn.Close()
	b := &memBucket{objects: map[string]memObject{}}
	saver, err := outputs.New(objects{b},
		outputs.WithTLSConfig(cdn.Client().Transport.(*http.Transport).TLSClientConfig),
		outputs.WithAllowPrivate())
	if err != nil {
		panic(err)
	}
	s := &eachhook.Success{ID: "pred-2", Output: []byte(`"` + cdn.URL + `/clip.mp4"`)}
	for range 2 { // the second save finds the object and puts nothing
		saved, err := saver.Save(context.Background(), s)
		if err != nil {
			panic(err)
		}
		fmt.Println(saved[0].Location, saved[0].Size, saved[0].SHA256[:12], "puts:", b.puts)
	}
	// Output:
	// bucket:pred-2-0.mp4 9 34c451f5af29 puts: 1
	// bucket:pred-2-0.mp4 9 34c451f5af29 puts: 1
}

// bucket is what the Destination needs of an object store's client.
type bucket interface {
	Head(ctx context.Context, key string) (meta map[string]string, found bool, err error)
	Put(ctx context.Context, key string, body io.Reader, meta map[string]string) error
}

// objects is a Destination on a bucket.
type objects struct{ b bucket }

func (o objects) Stat(ctx context.Context, name string) (outputs.Saved, bool, error) {
	meta, found, err := o.b.Head(ctx, name)
	if err != nil || !found {
		return outputs.Saved{}, false, err
	}
	size, _ := strconv.ParseInt(meta["size"], 10, 64)
	return outputs.Saved{URL: meta["url"], Location: "bucket:" + name, Size: size,
		SHA256: meta["sha256"], ContentType: meta["content-type"]}, true, nil
}

func (o objects) Create(ctx context.Context, name string) (outputs.Pending, error) {
	f, err := os.CreateTemp("", "output-*")
	return &object{File: f, ctx: ctx, b: o.b, name: name}, err
}

type object struct {
	*os.File
	ctx  context.Context
	b    bucket
	name string
}

func (p *object) Commit(s outputs.Saved) (string, error) {
	defer p.Abort()
	if _, err := p.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	meta := map[string]string{"url": s.URL, "size": strconv.FormatInt(s.Size, 10), "sha256": s.SHA256, "content-type": s.ContentType}
	return "bucket:" + p.name, p.b.Put(p.ctx, p.name, p.File, meta)
}

func (p *object) Abort() error {
	p.Close()
	return os.Remove(p.Name())
}

// memBucket is a bucket in memory, for the example.
type memBucket struct {
	mu      sync.Mutex
	objects map[string]memObject
	puts    int
}

type memObject struct {
	body []byte
	meta map[string]string
}

func (m *memBucket) Head(_ context.Context, key string) (map[string]string, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.objects[key]
	return o.meta, ok, nil
}

func (m *memBucket) Put(_ context.Context, key string, body io.Reader, meta map[string]string) error {
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, body); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.objects[key] = memObject{buf.Bytes(), meta}
	m.puts++
	return nil
}
