; Inno Setup 6 script for Hearth's Windows installer. packaging/windows/package.py
; runs it on the PyInstaller folder (dist\hearth) after packaging/build.py made it:
;
;   ISCC.exe /DAppVersion=0.1.0 /DNumericVersion=0.1.0 /DSourceDir=C:\...\dist\hearth
;            /DOutputDir=C:\...\dist /DIconFile=C:\...\build\icons\hearth.ico hearth.iss
;
; Installs for the current user by default (no administrator rights, into
; %LOCALAPPDATA%\Programs\Hearth); a dialog offers all users (Program Files)
; instead. The uninstaller removes only what Setup installed: conversations,
; models and settings in %LOCALAPPDATA%\Hearth stay.

#ifndef AppVersion
  #error Pass the version: /DAppVersion=0.1.0
#endif
#ifndef SourceDir
  #error Pass the PyInstaller folder: /DSourceDir=C:\...\dist\hearth
#endif
#ifndef OutputDir
  #error Pass the folder for the installer: /DOutputDir=C:\...\dist (relative paths start at this script)
#endif
#ifndef NumericVersion
  #define NumericVersion "0.0.0"
#endif

[Setup]
; Never change AppId: it is how an upgrade finds, replaces and uninstalls an earlier Hearth.
AppId={{78EF02D5-616A-4541-86D0-7A5AED0FD48E}
AppName=Hearth
AppVersion={#AppVersion}
AppVerName=Hearth {#AppVersion}
AppPublisher=Hearth
VersionInfoVersion={#NumericVersion}
DefaultDirName={autopf}\Hearth
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
; Qt 6 runs on Windows 10 1809 and later.
MinVersion=10.0.17763
OutputDir={#OutputDir}
OutputBaseFilename=Hearth-{#AppVersion}-windows-x64-setup
#ifdef IconFile
SetupIconFile={#IconFile}
#endif
UninstallDisplayIcon={app}\hearth.exe
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[InstallDelete]
; An upgrade replaces the whole bundle: a library left from an older version must not be loaded by the new one.
Type: filesandordirs; Name: "{app}\_internal"

[Files]
Source: "{#SourceDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\Hearth"; Filename: "{app}\hearth.exe"
Name: "{autodesktop}\Hearth"; Filename: "{app}\hearth.exe"; Tasks: desktopicon

[Run]
Filename: "{app}\hearth.exe"; Description: "{cm:LaunchProgram,Hearth}"; Flags: nowait postinstall skipifsilent
