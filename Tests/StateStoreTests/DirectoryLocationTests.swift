import Foundation
import StateStore
import Testing

/// Where the directory back end may keep its files, and what it says when it cannot.
@Suite("Directory back end: location and mode")
struct DirectoryLocationTests {
    func mode(_ path: String) throws -> Int? {
        try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
    }

    @Test("a directory tsidp creates is 0700, and so is every parent it creates")
    func created() throws {
        let root = TemporaryDirectory.make()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let warnings = LogCapture()
        _ = try DirectoryStateStore(path: root + "/a/b/state", logger: warnings.logger)
        for path in [root, root + "/a", root + "/a/b", root + "/a/b/state"] {
            #expect(try mode(path) == 0o700, "\(path)")
        }
        #expect(warnings.lines.isEmpty)
    }

    @Test("an existing 0700 directory is used without a warning")
    func existingPrivate() throws {
        let path = TemporaryDirectory.make()
        defer { try? FileManager.default.removeItem(atPath: path) }
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        #expect(chmod(path, 0o700) == 0)
        let warnings = LogCapture()
        _ = try DirectoryStateStore(path: path, logger: warnings.logger)
        #expect(try mode(path) == 0o700)
        #expect(warnings.lines.isEmpty)
    }

    @Test("a directory only its group may enter keeps that mode, with a warning")
    func existingGroup() throws {
        let path = TemporaryDirectory.make()
        defer { try? FileManager.default.removeItem(atPath: path) }
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        #expect(chmod(path, 0o750) == 0)
        let warnings = LogCapture()
        _ = try DirectoryStateStore(path: path, logger: warnings.logger)
        #expect(try mode(path) == 0o750)
        #expect(warnings.lines.count == 1)
        #expect(warnings.lines.first?.contains("has mode 0750") == true, "\(warnings.lines)")
    }

    @Test("a path under a regular file names the file that is not a directory")
    func underAFile() throws {
        let root = TemporaryDirectory.make()
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let file = URL(fileURLWithPath: root).standardizedFileURL.path + "/hostname"
        try Data("host\n".utf8).write(to: URL(fileURLWithPath: file))
        for path in [file + "/sub", file + "/sub/deeper"] {
            do {
                _ = try DirectoryStateStore(path: path)
                Issue.record("\(path) should be refused")
            } catch let error as StateStoreError {
                #expect(error.kind == .configuration)
                #expect(error.message == "cannot create state directory \(path): \(file) is not a directory")
                #expect(!error.message.contains("error 512"))
            }
        }
    }

    @Test("a path that is a regular file says so")
    func isAFile() throws {
        let path = URL(fileURLWithPath: TemporaryDirectory.make()).standardizedFileURL.path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Data().write(to: URL(fileURLWithPath: path))
        #expect(throws: StateStoreError(.configuration, "state directory \(path) exists and is not a directory")) {
            try DirectoryStateStore(path: path)
        }
    }

    @Test("an empty path is refused instead of meaning the working directory")
    func emptyPath() {
        #expect(throws: StateStoreError(.configuration, "the state directory path is empty")) {
            try DirectoryStateStore(path: "")
        }
    }

    @Test("a state file that cannot be read gives the system's reason, naming the file")
    func unreadableFile() async throws {
        let path = TemporaryDirectory.make()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let store = try DirectoryStateStore(path: path)
        // A directory where a state file should be cannot be read as one.
        try FileManager.default.createDirectory(atPath: path + "/oidc-key.json", withIntermediateDirectories: false)
        do {
            _ = try await store.read("oidc-key.json")
            Issue.record("reading a directory should fail")
        } catch let error as StateStoreError {
            #expect(error.message.contains("oidc-key.json: "), "\(error.message)")
            #expect(!error.message.contains("NSCocoaErrorDomain"), "\(error.message)")
            #expect(!error.message.contains("error 512"), "\(error.message)")
        }
    }
}
