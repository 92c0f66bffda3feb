package web

import (
	"github.com/graphql-go/graphql"

	"builds/app"
)

// Secrets: listing and sharing. Their material is @worker only.

func (g *schemaBuilder) secretTypes() {
	sec := func(p graphql.ResolveParams) *app.Secret { return p.Source.(*app.Secret) }
	fromUserDesc := "Set when this secret was copied from another user account"
	common := func() graphql.Fields {
		return graphql.Fields{
			"id":      {Type: nn(graphql.Int), Resolve: func(p graphql.ResolveParams) (any, error) { return sec(p).ID, nil }},
			"created": {Type: nn(g.timeT), Resolve: func(p graphql.ResolveParams) (any, error) { return sec(p).Created, nil }},
			"uuid":    {Type: nn(graphql.String), Resolve: func(p graphql.ResolveParams) (any, error) { return sec(p).UUID, nil }},
			"name":    {Type: graphql.String, Resolve: func(p graphql.ResolveParams) (any, error) { return derefString(sec(p).Name), nil }},
			"fromUser": {Type: g.entity, Description: fromUserDesc, Resolve: g.wrap(func(p graphql.ResolveParams) (any, error) {
				s := sec(p)
				if s.FromUserID == nil {
					return nil, nil
				}
				return nullIfNotFound(g.userByID(p.Context, *s.FromUserID))
			})},
		}
	}
	// material resolves a secret's plaintext for build workers.
	material := g.worker(func(p graphql.ResolveParams) (any, error) {
		s := sec(p)
		full, err := g.srv.Service.ResolveSecret(p.Context, s.UserID, s.UUID)
		if err != nil {
			return nil, err
		}
		return full.Data, nil
	})
	g.secret = graphql.NewInterface(graphql.InterfaceConfig{
		Name: "Secret",
		Fields: graphql.Fields{
			"id":       {Type: nn(graphql.Int)},
			"created":  {Type: nn(g.timeT)},
			"uuid":     {Type: nn(graphql.String)},
			"name":     {Type: graphql.String},
			"fromUser": {Type: g.entity, Description: fromUserDesc},
		},
		ResolveType: func(p graphql.ResolveTypeParams) *graphql.Object {
			s, _ := p.Value.(*app.Secret)
			if s == nil {
				return nil
			}
			switch s.Type {
			case app.SecretSSHKey:
				return g.sshKey
			case app.SecretPGPKey:
				return g.pgpKey
			}
			return g.secretFile
		},
	})
	key := func(name string) *graphql.Object {
		f := common()
		f["privateKey"] = &graphql.Field{Type: nn(g.binaryT), Resolve: material}
		return graphql.NewObject(graphql.ObjectConfig{Name: name, Interfaces: []*graphql.Interface{g.secret}, Fields: f})
	}
	g.sshKey = key("SSHKey")
	g.pgpKey = key("PGPKey")
	f := common()
	f["path"] = &graphql.Field{Type: nn(graphql.String), Resolve: func(p graphql.ResolveParams) (any, error) { return derefString(sec(p).Path), nil }}
	f["mode"] = &graphql.Field{Type: nn(graphql.Int), Resolve: func(p graphql.ResolveParams) (any, error) {
		if m := sec(p).Mode; m != nil {
			return *m, nil
		}
		return nil, nil
	}}
	f["data"] = &graphql.Field{Type: nn(g.binaryT), Resolve: material}
	g.secretFile = graphql.NewObject(graphql.ObjectConfig{Name: "SecretFile", Interfaces: []*graphql.Interface{g.secret}, Fields: f})
	g.secretCursor = graphql.NewObject(graphql.ObjectConfig{
		Name:        "SecretCursor",
		Description: cursorDescription("secrets"),
		Fields: graphql.Fields{
			"results": {Type: nn(listNN(g.secret)), Resolve: func(p graphql.ResolveParams) (any, error) { return p.Source.(*app.SecretList).Secrets, nil }},
			"cursor":  {Type: g.cursorT, Resolve: func(p graphql.ResolveParams) (any, error) { return optCursor(p.Source.(*app.SecretList).Cursor), nil }},
		},
	})
}

// secretQueries is Query.secrets.
func (g *schemaBuilder) secretQueries(f graphql.Fields) {
	f["secrets"] = &graphql.Field{
		Type:        nn(g.secretCursor),
		Description: "Returns secrets owned by the authenticated user.",
		Args:        graphql.FieldConfigArgument{"cursor": {Type: g.cursorT}},
		Resolve: g.access(app.ScopeSecrets, app.RO, func(p graphql.ResolveParams) (any, error) {
			return g.srv.Service.Secrets(p.Context, argCursor(p))
		}),
	}
}

// secretMutations is Mutation.shareSecret.
func (g *schemaBuilder) secretMutations(f graphql.Fields) {
	f["shareSecret"] = &graphql.Field{
		Type:        nn(g.secret),
		Description: "Copies a secret to the target user account.",
		Args: graphql.FieldConfigArgument{
			"uuid": {Type: nn(graphql.String)},
			"user": {Type: nn(graphql.String)},
		},
		Resolve: g.access(app.ScopeSecrets, app.RW, func(p graphql.ResolveParams) (any, error) {
			return g.srv.Service.ShareSecret(p.Context, argString(p, "uuid"), argString(p, "user"))
		}),
	}
}
