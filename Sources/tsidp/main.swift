import TsidpCLI

await TsidpMain.main()
