/// The version this build reports (`--version`, page footers).
public enum TsidpVersion {
    public static let current = "0.1.0"
}
