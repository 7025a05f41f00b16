package inspect

import "net/http"

type ui struct{ in *Inspector }

func newUI(in *Inspector) (*ui, error) { return &ui{in: in}, nil }

func (u *ui) register(mux *http.ServeMux) {}
