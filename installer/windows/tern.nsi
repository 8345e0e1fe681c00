; Tern for Windows: a per-user installer (no administrator rights) for the PyInstaller bundle.
;
;   makensis -DVERSION=0.1.0 -DSOURCE_DIR=build\bundle\dist\Tern -DICON=build\bundle\icons\tern.ico ^
;            -DOUTFILE=dist\Tern-0.1.0-windows-x64.exe installer\windows\tern.nsi
;
; Installs into %LOCALAPPDATA%\Programs\Tern, adds a Start-menu shortcut, offers
; Tern in "Open with" for GGUF models and documents, and registers an uninstaller
; in Apps & features. Uninstalling keeps the user's conversations, models and
; settings (%LOCALAPPDATA%\tern) unless the user asks for them to be deleted.

Unicode true
!include "MUI2.nsh"
!include "FileFunc.nsh"

!ifndef VERSION
  !error "Pass -DVERSION=<version>"
!endif
!ifndef SOURCE_DIR
  !error "Pass -DSOURCE_DIR=<the PyInstaller bundle folder>"
!endif
!ifndef ICON
  !error "Pass -DICON=<tern.ico>"
!endif
!ifndef OUTFILE
  !define OUTFILE "Tern-${VERSION}-windows-x64.exe"
!endif

!define APP "Tern"
!define EXE "Tern.exe"
!define UNINSTALL_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\Tern"
!define DATA_DIR "$LOCALAPPDATA\tern"

Name "${APP} ${VERSION}"
OutFile "${OUTFILE}"
RequestExecutionLevel user
InstallDir "$LOCALAPPDATA\Programs\${APP}"
InstallDirRegKey HKCU "${UNINSTALL_KEY}" "InstallLocation"
SetCompressor /SOLID lzma
ShowInstDetails nevershow
ShowUninstDetails nevershow

!define MUI_ICON "${ICON}"
!define MUI_UNICON "${ICON}"
!define MUI_ABORTWARNING
!define MUI_FINISHPAGE_RUN "$INSTDIR\${EXE}"
!define MUI_FINISHPAGE_RUN_TEXT "Start ${APP} now"

!insertmacro MUI_PAGE_WELCOME
!insertmacro MUI_PAGE_DIRECTORY
!insertmacro MUI_PAGE_INSTFILES
!insertmacro MUI_PAGE_FINISH
!insertmacro MUI_UNPAGE_CONFIRM
!insertmacro MUI_UNPAGE_INSTFILES
!insertmacro MUI_LANGUAGE "English"

VIProductVersion "${VERSION}.0"
VIAddVersionKey "ProductName" "${APP}"
VIAddVersionKey "ProductVersion" "${VERSION}"
VIAddVersionKey "FileDescription" "${APP} installer"
VIAddVersionKey "FileVersion" "${VERSION}"
VIAddVersionKey "LegalCopyright" "Apache License 2.0"

Function .onInit
  ; A running Tern holds its files open; ask the user to close it first.
  FindWindow $0 "" "${APP}"
  StrCmp $0 0 +3
    MessageBox MB_OKCANCEL|MB_ICONEXCLAMATION "${APP} is running. Close it, then press OK." /SD IDOK IDOK +2
    Abort
FunctionEnd

Section "Tern" SecMain
  SetOutPath "$INSTDIR"
  ; An update replaces the program, never the user's data (which lives elsewhere).
  RMDir /r "$INSTDIR\_internal"
  File /r "${SOURCE_DIR}\*.*"
  WriteUninstaller "$INSTDIR\Uninstall.exe"

  CreateShortcut "$SMPROGRAMS\${APP}.lnk" "$INSTDIR\${EXE}" "" "$INSTDIR\${EXE}" 0

  ; "Open with Tern" for models and documents; Tern imports a model, or starts a chat about a document.
  WriteRegStr HKCU "Software\Classes\Tern.gguf" "" "GGUF language model"
  WriteRegStr HKCU "Software\Classes\Tern.gguf\DefaultIcon" "" "$INSTDIR\${EXE},0"
  WriteRegStr HKCU "Software\Classes\Tern.gguf\shell\open\command" "" '"$INSTDIR\${EXE}" "%1"'
  WriteRegStr HKCU "Software\Classes\.gguf\OpenWithProgids" "Tern.gguf" ""
  WriteRegStr HKCU "Software\Classes\Applications\${EXE}\shell\open\command" "" '"$INSTDIR\${EXE}" "%1"'
  WriteRegStr HKCU "Software\Classes\Applications\${EXE}\SupportedTypes" ".gguf" ""
  WriteRegStr HKCU "Software\Classes\Applications\${EXE}\SupportedTypes" ".pdf" ""
  WriteRegStr HKCU "Software\Classes\Applications\${EXE}\SupportedTypes" ".docx" ""
  WriteRegStr HKCU "Software\Classes\Applications\${EXE}\SupportedTypes" ".md" ""

  ${GetSize} "$INSTDIR" "/S=0K" $0 $1 $2
  WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayName" "${APP}"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayVersion" "${VERSION}"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "Publisher" "The Tern developers"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayIcon" "$INSTDIR\${EXE}"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "InstallLocation" "$INSTDIR"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "UninstallString" '"$INSTDIR\Uninstall.exe"'
  WriteRegStr HKCU "${UNINSTALL_KEY}" "QuietUninstallString" '"$INSTDIR\Uninstall.exe" /S'
  WriteRegDWORD HKCU "${UNINSTALL_KEY}" "EstimatedSize" "$0"
  WriteRegDWORD HKCU "${UNINSTALL_KEY}" "NoModify" 1
  WriteRegDWORD HKCU "${UNINSTALL_KEY}" "NoRepair" 1
SectionEnd

Section "Uninstall"
  Delete "$SMPROGRAMS\${APP}.lnk"
  RMDir /r "$INSTDIR\_internal"
  Delete "$INSTDIR\${EXE}"
  Delete "$INSTDIR\*.txt"
  Delete "$INSTDIR\Uninstall.exe"
  RMDir /r "$INSTDIR\share"
  RMDir "$INSTDIR"

  DeleteRegKey HKCU "Software\Classes\Tern.gguf"
  DeleteRegValue HKCU "Software\Classes\.gguf\OpenWithProgids" "Tern.gguf"
  DeleteRegKey HKCU "Software\Classes\Applications\${EXE}"
  DeleteRegKey HKCU "${UNINSTALL_KEY}"

  ; Conversations, documents, models and settings stay unless the user says otherwise
  ; (a silent uninstall keeps them).
  IfFileExists "${DATA_DIR}\*.*" 0 done
    MessageBox MB_YESNO|MB_ICONQUESTION|MB_DEFBUTTON2 \
      "Also delete your Tern conversations, attached documents, downloaded models and settings?$\r$\n$\r$\n\
They are in ${DATA_DIR}. Choose No to keep them for a later install." /SD IDNO IDNO done
    RMDir /r "${DATA_DIR}"
  done:
SectionEnd
