module example.com/dpi

go 1.26

require github.com/mssante-go/sdk v0.0.0

replace github.com/mssante-go/sdk => ../../..
